"""The Triton kernels compiled for the GPU (sm_80 and sm_90) on a machine without one, through the package's
own launchers (tests/support/triton_aot.py: Triton's driver stands in for a GPU, launches only compile). The
interpreter that runs the other Triton tests on the CPU accepts code the GPU compiler refuses (module globals
in @triton.jit code, a method call on an int argument that Triton specialised to the constant 1), so this is
where such code fails. Checked per compiled kernel: it compiles, uses no local memory (no spills, no stack),
and the hot kernels move 16 bytes per global access."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "support" / "triton_aot.py"
ALL_KERNELS = {"_adagn_silu_single_kernel", "_adagn_silu_wide_kernel", "_stats_kernel", "_finalize_kernel",
               "_apply_kernel", "_posterior_step_kernel", "_philox_rows_kernel"}
# sm_90 (H100): every dtype of the digits and cifar10 chains; sm_80 (A100): cifar10 in float32 and bfloat16.
# celebahq256 and the rest of the matrix: test_full_matrix_compiles (slow).
DEFAULT_RUNS = {90: ("digits,cifar10", "float32,bfloat16,float16"), 80: ("cifar10", "float32,bfloat16")}


def _start(arch: int, presets: str, dtypes: str, cache: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(cache), TRITON_DEFAULT_FP_FUSION="1")  # a fresh cache: every kernel compiles
    return subprocess.Popen([sys.executable, str(SCRIPT), "--arch", str(arch), "--presets", presets, "--dtypes",
                             dtypes], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=900)
    if proc.returncode and "ptxas" in err and "not found" in err:
        pytest.skip("triton's bundled ptxas is missing")
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert records or proc.returncode == 0, err[-3000:]
    return {"rc": proc.returncode, "stderr": err, "kernels": [r for r in records if r["kind"] == "kernel"],
            "failed": [r for r in records if r["kind"] == "failed"]}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    pytest.importorskip("triton.backends.nvidia", reason="triton's NVIDIA backend is not installed")
    procs = {arch: _start(arch, presets, dtypes, tmp_path_factory.mktemp(f"triton-cache-sm{arch}"))
             for arch, (presets, dtypes) in DEFAULT_RUNS.items()}  # both archs at once: 2 cores
    return {arch: _finish(proc) for arch, proc in procs.items()}


def _kernels(run: dict, name: str, case: str) -> list[dict]:
    found = [k for k in run["kernels"] if k["name"] == name and any(c.startswith(case) for c in k["cases"])]
    assert found, f"no {name} compiled for a case starting with {case!r}"
    return found


@pytest.mark.parametrize("arch", sorted(DEFAULT_RUNS))
def test_every_launch_compiles(compiled, arch):
    run = compiled[arch]
    assert not run["failed"], "\n".join(f"{f['case']}: {f['error']}" for f in run["failed"][:5])
    assert run["rc"] == 0, run["stderr"][-2000:]
    assert {k["name"] for k in run["kernels"]} == ALL_KERNELS
    assert {k["arch"] for k in run["kernels"]} == {arch}


@pytest.mark.parametrize("arch", sorted(DEFAULT_RUNS))
def test_no_kernel_spills_or_uses_local_memory(compiled, arch):
    """cuobjdump's resource usage of each cubin: no stack frame (spills, or libdevice's trigonometric slow
    path with its tables) and no local memory; the PTX declares none either."""
    bad = [(k["name"], k["cases"][:1], k.get("stack"), k.get("local")) for k in compiled[arch]["kernels"]
           if k.get("stack", -1) != 0 or k.get("local", -1) != 0 or k["ptx_local"]]
    assert not bad


def test_int_arguments_equal_to_one_compile(compiled):
    """Triton turns an int argument equal to 1 into a constant; seed 1 must still compile (its .to() on the
    seed) and add the same stream as any other seed: the seed is not specialised at all."""
    run = compiled[90]
    seed_one = _kernels(run, "_posterior_step_kernel", "posterior float32 nchw seed=1 offset=0")
    seed_zero = _kernels(run, "_posterior_step_kernel", "posterior float32 nchw seed=0 offset=0")
    assert [k["hash"] for k in seed_one] == [k["hash"] for k in seed_zero]


@pytest.mark.parametrize("case", ["cifar10 float32 chain posterior 100x3x32x32 noise=True",
                                  "posterior bfloat16 nchw noise", "posterior float32 nchw seed=0 offset=0",
                                  "posterior float16 channels_last seed=4611686018427387909 offset=0"])
def test_posterior_moves_16_bytes_per_access(compiled, case):
    for k in _kernels(compiled[90], "_posterior_step_kernel", case):
        assert k["loads"] == ["ld.global.v4.b32"] and k["stores"] == ["st.global.v4.b32"], case


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_noise_rows_store_16_bytes_per_access(compiled, dtype):
    """Rows of 3072 normals (a cifar10 image) from a Philox block boundary: each thread stores its block's 4
    normals at once (16 bytes in float32; in bfloat16 two blocks' 8 normals)."""
    for k in _kernels(compiled[90], "_philox_rows_kernel", f"philox rows {dtype} count=3072 offset=0"):
        assert k["stores"] == ["st.global.v4.b32"]


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_adagn_cifar10_channels_last_moves_16_bytes_per_access(compiled, dtype):
    """cifar10's 128x32x32 AdaGN (Cg = 4, channels_last): the wide kernel's x loads and y stores are 16 bytes."""
    for arch in (90, 80):
        for k in _kernels(compiled[arch], "_adagn_silu_wide_kernel",
                          f"cifar10 {dtype} adagn 128x32x32 G=32 channels_last"):
            assert k["stores"] == ["st.global.v4.b32"]
            assert "ld.global.v4.b32" in k["loads"]


@pytest.mark.slow
def test_full_matrix_compiles(tmp_path):
    """Every preset (celebahq256's split path too), dtype and layout, for sm_80 and sm_90."""
    pytest.importorskip("triton.backends.nvidia", reason="triton's NVIDIA backend is not installed")
    procs = [_start(arch, "digits,cifar10,celebahq256", "float32,bfloat16,float16", tmp_path / f"sm{arch}")
             for arch in (80, 90)]
    for proc in procs:
        run = _finish(proc)
        assert not run["failed"], "\n".join(f"{f['case']}: {f['error']}" for f in run["failed"][:5])
        assert {k["name"] for k in run["kernels"]} == ALL_KERNELS
        assert all(k["stack"] == 0 and k["local"] == 0 for k in run["kernels"])
