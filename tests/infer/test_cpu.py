"""pdgan_infer.cpu: the CPU kind from feature flags (fake flag sets of real CPUs), oneDNN's ISA cap, the
PDGAN_CPU_KIND override, and what the table makes the Engine choose (dtype="auto")."""
from __future__ import annotations

import pytest
import torch

from pdgan_infer import cpu
from pdgan_infer.engine import resolve_dtype
from pdgan_infer.optimize import reduced_dtype_supported

# abridged /proc/cpuinfo flags of three CPUs
SAPPHIRE_RAPIDS = frozenset("fpu sse sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 "
                            "avx512_fp16 amx_bf16 amx_tile amx_int8".split())
ZEN4 = frozenset("fpu sse sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 vaes".split())
HASWELL = frozenset("fpu sse sse2 avx avx2 fma f16c".split())
SKYLAKE_X = frozenset("fpu sse sse2 avx avx2 fma avx512f avx512bw avx512vl".split())


@pytest.mark.parametrize("flags, kind", [(SAPPHIRE_RAPIDS, "amx"), (ZEN4, "avx512_bf16"), (HASWELL, "no_bf16"),
                                         (SKYLAKE_X, "no_bf16"), (frozenset(), "no_bf16")],
                         ids=["sapphire-rapids", "zen4", "haswell", "skylake-x", "no-flags"])
def test_kind_from_flags(flags, kind):
    assert cpu.kind_from_features(flags) == kind


@pytest.mark.parametrize("cap, kind", [("AVX512_CORE_BF16", "avx512_bf16"), ("avx512_core_bf16", "avx512_bf16"),
                                       ("AVX512_CORE_AMX", "amx"), ("ALL", "amx"), ("", "amx"),
                                       ("AVX512_CORE_VNNI", "no_bf16"), ("AVX2", "no_bf16")])
def test_onednn_isa_cap_lowers_the_kind(cap, kind):
    """ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 runs a Xeon as a CPU without AMX: the table follows oneDNN."""
    assert cpu.kind_from_features(SAPPHIRE_RAPIDS, cap) == kind


def test_a_cap_never_adds_features():
    assert cpu.kind_from_features(HASWELL, "AVX512_CORE_AMX") == "no_bf16"
    assert cpu.kind_from_features(ZEN4, "AVX512_CORE_AMX") == "avx512_bf16"


def test_environment_override(monkeypatch):
    monkeypatch.setenv("PDGAN_CPU_KIND", "no_bf16")
    assert cpu.cpu_kind() == "no_bf16" and cpu.cpu_choice().dtype == torch.float32
    monkeypatch.setenv("PDGAN_CPU_KIND", "avx512")
    with pytest.raises(cpu.CPUKindError, match="PDGAN_CPU_KIND='avx512' is not a CPU kind; use one of amx"):
        cpu.cpu_kind()


def test_detection_reads_this_cpu(monkeypatch):
    monkeypatch.delenv("PDGAN_CPU_KIND", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert cpu.cpu_kind() == cpu.kind_from_features(cpu.cpu_flags())


def test_table():
    """Every kind has a row; F(4x4) only in float32 (its bf16 error, csrc/winograd); bf16 Winograd only
    without AMX; bfloat16 as the auto dtype only where it is native."""
    assert set(cpu.TABLE) == set(cpu.KINDS)
    for kind, row in cpu.TABLE.items():
        assert row.kind == kind and row.winograd_tile[torch.float32] == 4
        assert row.winograd_tile[torch.bfloat16] == (2 if kind == "avx512_bf16" else None)
        assert row.dtype == (torch.float32 if kind == "no_bf16" else torch.bfloat16)


@pytest.mark.parametrize("kind", cpu.KINDS)
def test_engine_auto_dtype_follows_the_table(monkeypatch, kind):
    monkeypatch.setenv("PDGAN_CPU_KIND", kind)
    cpu_dev = torch.device("cpu")
    want = cpu.TABLE[kind].dtype
    if reduced_dtype_supported(want, cpu_dev) is not None:
        want = torch.float32  # the table's dtype is not native on the CPU running the test
    assert resolve_dtype("auto", cpu_dev) == want
    assert resolve_dtype(None, cpu_dev) == torch.float32  # the default stays float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float32
