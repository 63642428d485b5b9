"""What kind of CPU this is, and what runs fastest on each kind: a documented table keyed by CPU features.

    kind          detected by (/proc/cpuinfo flags)   auto dtype  fp32 3x3 convs    bf16 3x3 convs
    amx           amx_bf16 (and avx512_bf16)          bfloat16    Winograd F(4x4)   oneDNN direct (AMX tiles)
    avx512_bf16   avx512_bf16, no amx_bf16            bfloat16    Winograd F(4x4)   Winograd F(2x2), bf16 GEMMs
    no_bf16       neither                             float32     Winograd F(4x4)   - (bf16 is not native here)

`backend="auto"` tries, on every kind, native, optimized, torch (`CPU_AUTO_ORDER`): native was the fastest
backend in both dtypes on the AMX Xeon and on the AMD EPYC Zen 4 (docs/benchmarks.md). A table rather than a
measurement at first use: what differs between the machines measured is the kind (AMX or not), not the order
of the backends; a table is deterministic (tests, serving replicas) and costs nothing at start-up. The
avx512_bf16 row's bf16 Winograd rests on 1-thread measurements and one quiet 2-thread sample on a busy Zen 4
(docs/benchmarks.md, "CPU without AMX"); the quiet 2-thread run decides it.

* amx: oneDNN's bf16 direct convolution runs on AMX tiles (native bf16 4.89x eager fp32 on the 2-core Xeon);
  a Winograd convolution there would spend most of its time in the transforms, which AMX does not speed up.
* avx512_bf16 (AMD Zen 4, Intel Cooper Lake): bf16 dot products (vdpbf16ps) but no AMX; the direct bf16
  convolution runs near the vector units' peak, so only fewer multiply-adds help: Winograd F(2x2, 3x3)
  (4 products per output instead of 9) with bf16 GEMMs. F(4x4) is not used in bf16: its larger transform
  constants give 20-30x a direct bf16 convolution's rounding error, F(2x2) 1.5-2x (csrc/winograd).

Overrides: `PDGAN_CPU_KIND=amx|avx512_bf16|no_bf16` skips detection (tests, or a CPU the flags misdescribe).
`ONEDNN_MAX_CPU_ISA` (oneDNN's own cap, e.g. AVX512_CORE_BF16 to run a Xeon as a CPU without AMX) lowers
the detected kind the way it lowers oneDNN's kernels.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import PDGANError

KINDS = ("amx", "avx512_bf16", "no_bf16")
ENV_KIND = "PDGAN_CPU_KIND"

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that keep avx512_bf16 but not AMX; a cap naming AMX (or ALL / DEFAULT)
# keeps everything, any other cap (AVX512_CORE_VNNI, AVX512_CORE, AVX2, ...) removes bf16 too
_BF16_NO_AMX_CAPS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512")


class CPUKindError(PDGANError, ValueError):
    """$PDGAN_CPU_KIND names no kind of the table."""


@dataclass(frozen=True)
class CPUChoice:
    """What a kind of CPU runs: the dtype `dtype="auto"` picks and the Winograd tile of the native backend's
    3x3 convolutions per dtype (None: oneDNN's direct convolution)."""

    kind: str
    dtype: torch.dtype  # dtype="auto"
    winograd_tile: dict  # {torch.dtype: 4 (F(4x4, 3x3)), 2 (F(2x2, 3x3)) or None}


TABLE = {
    "amx": CPUChoice("amx", torch.bfloat16, {torch.float32: 4, torch.bfloat16: None}),
    "avx512_bf16": CPUChoice("avx512_bf16", torch.bfloat16, {torch.float32: 4, torch.bfloat16: 2}),
    "no_bf16": CPUChoice("no_bf16", torch.float32, {torch.float32: 4, torch.bfloat16: None}),
}
CPU_AUTO_ORDER = ("native", "optimized", "torch")


def kind_from_features(flags: set[str] | frozenset[str], onednn_max_isa: str | None = None) -> str:
    """The table's kind for a CPU with these /proc/cpuinfo `flags`, under oneDNN's ISA cap (None: none)."""
    amx = "amx_bf16" in flags and "amx_tile" in flags
    bf16 = "avx512_bf16" in flags or amx
    cap = (onednn_max_isa or "").strip().upper()
    if cap and cap not in ("ALL", "DEFAULT") and "AMX" not in cap:
        amx = False
        bf16 = bf16 and cap in _BF16_NO_AMX_CAPS
    return "amx" if amx else "avx512_bf16" if bf16 else "no_bf16"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none: not Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_kind() -> str:
    """This CPU's kind: $PDGAN_CPU_KIND when set, else detected from its flags and ONEDNN_MAX_CPU_ISA."""
    forced = os.environ.get(ENV_KIND, "").strip()
    if forced:
        if forced not in KINDS:
            raise CPUKindError(f"{ENV_KIND}={forced!r} is not a CPU kind; use one of {', '.join(KINDS)} "
                             f"(or unset it to detect the CPU)")
        return forced
    return kind_from_features(cpu_flags(), os.environ.get("ONEDNN_MAX_CPU_ISA"))


def cpu_choice(kind: str | None = None) -> CPUChoice:
    """The table's row for `kind` (default: this CPU's)."""
    return TABLE[kind or cpu_kind()]
