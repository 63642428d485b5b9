"""Compile every Triton kernel for a GPU on a machine without one, through the package's own launchers.

    python tests/support/triton_aot.py --arch 90 [--presets digits,cifar10] [--dtypes float32,bfloat16] [--out FILE]

Triton's active driver is replaced by a stand-in whose target is GPUTarget("cuda", ARCH, 32) (device 0,
stream 0), and `JITFunction.run` is made to compile only (`warmup=True`): the launchers (`adagn_silu`,
`posterior_step`, `philox_normal_rows`, `draw_noise(impl="triton")`) then run on CPU tensors as on a GPU,
every specialisation they pick (constexprs, an int argument equal to 1, 16-byte divisibility of pointers and
integers) is compiled by Triton's real compiler and ptxas, and nothing is launched (outputs are left empty).

Cases (`cases()`): the calls the Triton backend's 2-step chain makes (the generator traced on the meta
device; each AdaGN shape compiled in both layouts and every dtype, batch 100, gamma/beta as the column
views of the merged style GEMM) for each preset, the posterior step
in every dtype, layout and noise mode with seeds 0, 1 and 2**62 + 5 and offsets 0-3, the noise rows of
every preset. Prints one JSON object per compiled kernel (name, constexprs, registers, stack, local
memory, global load / store widths from the PTX) and one per failed call; exit status 0 when nothing
failed. Must run without TRITON_INTERPRET (the kernels are built as JIT functions at import).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    sys.exit("triton_aot.py compiles for a GPU: run it without TRITON_INTERPRET")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import triton  # noqa: E402
import triton.runtime.jit as jit  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime import driver  # noqa: E402

SEEDS = (0, 1, 2**62 + 5)
BATCH = 100


class CompileOnlyDriver:
    """Triton's driver interface as far as compiling needs it: a CUDA target, device 0, stream 0."""

    def __init__(self, arch: int):
        self.target = GPUTarget("cuda", arch, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target

    def get_active_torch_device(self):
        return torch.device("cpu")

    def __getattr__(self, name):
        raise AttributeError(f"compile-only driver: {name} is not available without a GPU")


COMPILED: dict[str, object] = {}  # kernel hash -> CompiledKernel
CALL_KERNELS: list[str] = []  # hashes compiled (or found in the cache) by the current call


def compile_only(arch: int) -> None:
    driver.set_active(CompileOnlyDriver(arch))
    run = jit.JITFunction.run

    def compile_run(self, *args, grid, warmup, **kwargs):
        kernel = run(self, *args, grid=grid, warmup=True, **kwargs)
        key = kernel.hash
        COMPILED.setdefault(key, kernel)
        CALL_KERNELS.append(key)
        return kernel
    jit.JITFunction.run = compile_run

    from pdgan_infer.kernels import adagn, philox, posterior  # imported after the driver is set
    for module in (adagn, philox, posterior):  # CPU tensors stand for CUDA ones
        module.check_device = lambda *args, **kwargs: None


def _lazy(shape, stride, dtype, offset=0):
    """A tensor of this shape / strides / storage offset whose memory is never touched (never launched)."""
    size = offset + 1 + sum((s - 1) * st for s, st in zip(shape, stride))
    return torch.empty(size, dtype=dtype).as_strided(shape, stride, offset)


def _dense(shape, dtype, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=dtype, memory_format=fmt)


def chain_calls(preset: str, dtype: torch.dtype) -> tuple[set, set]:
    """The (AdaGN, posterior) calls of the Triton backend's chain for `preset` at BATCH images: the prepared
    generator run on the meta device with recording kernels. AdaGN: (C, H, W, groups, gamma (stride,
    offset), beta (stride, offset)); posterior: (shape, dtype, sigma != 0)."""
    from pdgan_infer.backends.base import chain, kernel_step
    from pdgan_infer.networks import PDGAN
    from pdgan_infer.optimize import Optimizations, prepare_generator
    adagn_calls, post_calls = set(), set()

    def adagn(x, gamma, beta, num_groups, eps=1e-6):
        adagn_calls.add((*x.shape[1:], num_groups, (gamma.stride(0), gamma.storage_offset()),
                         (beta.stride(0), beta.storage_offset())))
        return torch.empty_like(x)

    def post(x0, xt, c1, c2, sigma, noise=None):
        post_calls.add((tuple(x0.shape), x0.dtype, sigma != 0.0))
        return torch.empty_like(x0)
    model = PDGAN(preset, with_latent=False)
    model.generator.to("meta")
    generator = prepare_generator(model.generator, Optimizations(dtype=dtype))
    generator.set_adagn_kernel(adagn)
    c, T = model.config, model.schedule.T
    with torch.device("meta"), torch.no_grad():
        x = torch.empty(BATCH, c.channels, c.resolution, c.resolution)
        chain(generator, model.schedule, kernel_step(model.schedule, post), x, torch.empty(BATCH, c.generator.nz),
              torch.empty(T - 1, BATCH, c.generator.nz), torch.empty(T - 1, *x.shape))
    return adagn_calls, post_calls


def cases(presets: list[str], dtypes: list[torch.dtype]):
    """(label, thunk) for every launcher call to compile: the chain calls of `presets` with their trunk in each of
    `dtypes`, the posterior step and noise rows in each of `dtypes`, every preset's draw_noise."""
    from pdgan_infer.kernels.adagn import adagn_silu
    from pdgan_infer.kernels.philox import philox_normal_rows
    from pdgan_infer.kernels.posterior import posterior_step
    from pdgan_infer.sampler import draw_noise
    for preset in presets:
        for dtype in dtypes:
            adagn_calls, post_calls = chain_calls(preset, dtype)
            for c, h, w, groups, (gs, go), (bs, bo) in sorted(adagn_calls):
                for channels_last in (False, True):
                    def call(shape=(BATCH, c, h, w), groups=groups, gamma=(gs, go), beta=(bs, bo), dtype=dtype,
                             channels_last=channels_last):
                        x = _dense(shape, dtype, channels_last)
                        adagn_silu(x, _lazy(shape[:2], (gamma[0], 1), torch.float32, gamma[1]),
                                   _lazy(shape[:2], (beta[0], 1), torch.float32, beta[1]), groups)
                    layout = "channels_last" if channels_last else "nchw"
                    yield f"{preset} {str(dtype)[6:]} adagn {c}x{h}x{w} G={groups} {layout}", call
            for shape, pdtype, noisy in sorted(post_calls, key=str):
                def call(shape=shape, pdtype=pdtype, noisy=noisy):
                    x = torch.empty(shape, dtype=pdtype)
                    posterior_step(x, x, 0.5, 0.25, 0.1 if noisy else 0.0, noise=x if noisy else None)
                yield f"{preset} {str(dtype)[6:]} chain posterior {'x'.join(map(str, shape))} noise={noisy}", call
    from pdgan_infer.config import get_preset
    for preset in presets:
        c = get_preset(preset)
        yield f"{preset} draw_noise", lambda c=c: draw_noise(list(range(BATCH)), 2, c.channels, c.resolution,
                                                             c.generator.nz, impl="triton")
    image = (BATCH, 3, 32, 32)
    for dtype in dtypes:
        for channels_last in (False, True):
            layout = "channels_last" if channels_last else "nchw"
            for seed in SEEDS:
                for offset in (0, 1, 2, 3, 2**34 + 1):
                    def call(dtype=dtype, channels_last=channels_last, seed=seed, offset=offset):
                        x = _dense(image, dtype, channels_last)
                        posterior_step(x, x, 0.5, 0.25, 0.1, seed=seed, offset=offset)
                    yield f"posterior {str(dtype)[6:]} {layout} seed={seed} offset={offset}", call
            for mode in ("noise", "sigma=0"):
                def call(dtype=dtype, channels_last=channels_last, mode=mode):
                    x = _dense(image, dtype, channels_last)
                    posterior_step(x, x, 0.5, 0.25, 0.0 if mode == "sigma=0" else 0.1,
                                   noise=_dense(image, torch.float32, channels_last) if mode == "noise" else None)
                yield f"posterior {str(dtype)[6:]} {layout} {mode}", call
        for count, offset in ((3072, 0), (256, 2**34), (1001, 7), (5, 1)):
            yield (f"philox rows {str(dtype)[6:]} count={count} offset={offset}",
                   lambda dtype=dtype, count=count, offset=offset: philox_normal_rows(
                       torch.tensor(SEEDS, dtype=torch.int64), count, offset, dtype=dtype))


def _tool(name: str) -> str:
    import triton.backends.nvidia as nvidia
    return str(Path(nvidia.__file__).parent / "bin" / name)


def describe(kernel) -> dict:
    """Name, constexprs, resources (cuobjdump -res-usage of the cubin) and global access widths (PTX)."""
    ptx = kernel.asm["ptx"]
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        usage = subprocess.run([_tool("cuobjdump"), "-res-usage", f.name], capture_output=True, text=True,
                               check=True).stdout
    res = {k.lower(): int(v) for k, v in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", usage)}
    src = kernel.src
    constants = {str(k): v for k, v in getattr(src, "constants", {}).items()}
    return {"kind": "kernel", "name": kernel.name, "hash": kernel.hash, "arch": kernel.metadata.target.arch,
            "num_warps": kernel.metadata.num_warps, "constants": constants, **res,
            "ptx_local": bool(re.search(r"\.local\b|(?:ld|st)\.local", ptx)),
            "loads": sorted(set(re.findall(r"ld\.global[.a-z0-9]*", ptx))),
            "stores": sorted(set(re.findall(r"st\.global[.a-z0-9]*", ptx)))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 80 or 90")
    p.add_argument("--presets", default="digits,cifar10,celebahq256", help="comma-separated presets")
    p.add_argument("--dtypes", default="float32,bfloat16,float16", help="comma-separated dtypes")
    p.add_argument("--only", help="compile only the cases whose label contains this text")
    p.add_argument("--out", type=Path, help="write the JSON lines here too")
    args = p.parse_args(argv)
    compile_only(args.arch)
    lines, failed, calls = [], 0, {}
    dtypes = [getattr(torch, name) for name in args.dtypes.split(",")]
    for label, thunk in cases(args.presets.split(","), dtypes):
        if args.only and args.only not in label:
            continue
        CALL_KERNELS.clear()
        try:
            thunk()
        except Exception as e:  # noqa: BLE001 - every failing call is reported, the next one runs
            failed += 1
            cause = f" (caused by {type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else ""
            lines.append({"kind": "failed", "case": label, "error": f"{type(e).__name__}: {e}{cause}"[-1500:],
                          "trace": traceback.format_exc()[-1500:]})
            continue
        for key in CALL_KERNELS:
            calls.setdefault(key, []).append(label)
    for key, kernel in COMPILED.items():
        lines.append({**describe(kernel), "cases": calls.get(key, [])[:8], "n_cases": len(calls.get(key, []))})
    text = "\n".join(json.dumps(line, default=str) for line in lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    print(f"triton {triton.__version__}, sm_{args.arch}: {len(COMPILED)} kernels compiled, {failed} calls failed",
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
