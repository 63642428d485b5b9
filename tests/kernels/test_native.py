"""The native extension's packaging (pdgan_infer.kernels.native): fake kernels for torch.library, the loader
without the extension or with a stale one, and conftest.py failing the run when it is missing."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from native_impl import C1, C2, SIGMA, needs_native

from pdgan_infer.kernels import native


@needs_native
def test_ops_have_fake_kernels():
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    g = torch.randn(2, 8)
    torch.library.opcheck(torch.ops.pdgan.adagn_silu.default, (x, g, g, 4, 1e-6))
    torch.library.opcheck(torch.ops.pdgan.posterior_step.default, (x.contiguous(), x.contiguous(), C1, C2, SIGMA),
                          {"noise": None, "seed": 3, "offset": 1})
    with torch._subclasses.fake_tensor.FakeTensorMode():
        y = torch.ops.pdgan.adagn_silu(torch.empty(2, 8, 4, 4).contiguous(memory_format=torch.channels_last),
                                       torch.empty(2, 8), torch.empty(2, 8), 4, 1e-6)
        assert y.is_contiguous(memory_format=torch.channels_last)


@needs_native
def test_cpu_kernels_run_on_torchs_threads():
    """at::parallel_for is inline code in ATen's headers: in an extension compiled without OpenMP it runs every
    kernel on one thread, while torch's own ops use all of torch.get_num_threads(). setup.py compiles with
    -fopenmp, and the extension shares torch's OpenMP runtime (one libgomp in the process)."""
    import pdgan_infer._C as ext
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("this torch's parallel backend is not OpenMP")
    assert ext.OPENMP == 1, "pdgan_infer._C was built without -fopenmp: its CPU kernels run on one thread"
    # the OpenMP entry point the extension's parallel regions call is torch's own (other packages, such as
    # scikit-learn, may load a second libgomp into the process: the extension must not bind to theirs)
    import ctypes
    torch_cpu = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    if not hasattr(os, "RTLD_NOLOAD") or not torch_cpu.exists():
        return
    ours = ctypes.CDLL(ext.__file__, mode=os.RTLD_NOLOAD)
    torchs = ctypes.CDLL(str(torch_cpu), mode=os.RTLD_NOLOAD)
    address = lambda lib: ctypes.cast(lib.GOMP_parallel, ctypes.c_void_p).value  # noqa: E731
    assert address(ours) == address(torchs), "pdgan_infer._C calls another OpenMP runtime than torch's"


def test_loader_without_extension_reports_the_fix(monkeypatch):
    """A missing extension must not break `import`; calls name the build command."""
    import pdgan_infer
    monkeypatch.setitem(sys.modules, "pdgan_infer._C", None)  # makes `from pdgan_infer import _C` fail
    monkeypatch.delattr(pdgan_infer, "_C", raising=False)
    monkeypatch.delenv("PDGAN_SKIP_EXT", raising=False)
    spec = importlib.util.spec_from_file_location("_native_unbuilt", native.__file__)
    mod = importlib.util.module_from_spec(spec)
    with pytest.warns(RuntimeWarning, match="native kernels unavailable: extension not built.*PDGAN_SKIP_EXT=1"):
        spec.loader.exec_module(mod)  # backend="auto" falls back, but not silently
    assert not mod.available() and not mod.cuda_available()
    assert "pip install --no-build-isolation -e ." in mod.unavailable_reason()
    with pytest.raises(RuntimeError, match="pip install --no-build-isolation -e ."):
        mod.adagn_silu(torch.randn(1, 4, 2, 2), torch.ones(1, 4), torch.zeros(1, 4), 2)
    with pytest.raises(RuntimeError, match="unavailable"):
        mod.posterior_step(torch.zeros(3), torch.zeros(3), 1.0, 0.0, 0.0)
    with pytest.raises(RuntimeError, match="unavailable"):
        mod.philox_normal(3, 0)


def test_stale_extension_is_reported():
    """An extension built from other csrc/ sources than the checkout's (digest baked in by setup.py) is not
    used: its reason names the rebuild."""
    from types import SimpleNamespace

    from pdgan_infer.kernels._sources import source_digest
    csrc = Path(native.__file__).resolve().parents[2] / "csrc"
    current = source_digest(csrc, False)
    assert native._stale(SimpleNamespace(SOURCE_DIGEST=current, WITH_CUDA=0)) is None
    for built in ("0123456789abcdef", ""):  # other sources; a build from before the digest existed
        reason = native._stale(SimpleNamespace(SOURCE_DIGEST=built, WITH_CUDA=0))
        assert "stale" in reason and "pip install --no-build-isolation -e ." in reason
    # CUDA builds digest the .cu sources too, CPU builds neither them nor the CUDA launchers' headers
    assert source_digest(csrc, True) != current
    names = {p.name for p in __import__("pdgan_infer.kernels._sources", fromlist=["x"]).source_files(csrc, False)}
    assert "adagn_cpu.cpp" in names and not names & {"adagn_cuda.cu", "adagn_cuda.h", "bindings_cuda.cpp"}
    if native.available():  # the loaded build is this checkout's
        assert native._C.SOURCE_DIGEST == source_digest(csrc, native.cuda_available())


@pytest.mark.parametrize("skip_ext", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["fails-the-run", "PDGAN_SKIP_EXT=1"])
def test_suite_fails_without_the_extension_unless_skip_is_requested(skip_ext):
    """conftest.py: a missing extension ends the test run with exit status 1 and the reason; with
    PDGAN_SKIP_EXT=1 the run goes on and the native tests skip."""
    code = ("import sys; sys.modules['pdgan_infer._C'] = None; import pytest; "
            "sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', "
            "'tests/kernels/test_philox.py::test_python_philox_known_answers', "
            "'tests/kernels/test_native.py::test_ops_have_fake_kernels']))")
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "PDGAN_SKIP_EXT"}
    if skip_ext:
        env["PDGAN_SKIP_EXT"] = "1"
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    out = proc.stdout + proc.stderr
    if skip_ext:
        assert proc.returncode == 0, out[-3000:]
        assert "1 passed, 1 skipped" in out and "PDGAN_SKIP_EXT=1" in out
    else:
        assert proc.returncode == 1, out[-3000:]
        assert "pdgan native extension unavailable: extension not built" in out and "PDGAN_SKIP_EXT=1" in out
        assert "passed" not in out
