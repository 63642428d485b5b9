"""The CUDA sources, checked on a machine without a GPU (or a CUDA torch):
* setup.py's extension builds with exactly the nvcc command lines torch's BuildExtension writes into
  build.ninja for it (torch's macros, setup.py's defines and -gencode list, quoting), read back with
  `ninja -t commands` from a build that pretends torch has nvcc's CUDA version;
* an nvcc whose major version differs from torch's CUDA gives a CPU-kernel build with a warning;
* each .cu is torch-free and builds with a bare `nvcc -arch=sm_90 -c`, without register spills;
* the bindings compile (syntax) against torch's headers as a CUDA build would see them;
* the kernels run on the CPU through a host emulation of CUDA threads (csrc/testing/cuda_host_emu.h)
  and match the references.
Skips, with the reason, when nvcc (or g++ / the CUDA headers) is not installed."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[2] / "csrc"
CU_FILES = sorted(CSRC.rglob("*.cu"))
TORCH_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"](torch/|ATen/|c10/|pybind11/)', re.MULTILINE)


def _nvcc() -> str | None:
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if home and (Path(home) / "bin" / "nvcc").exists():
            return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)


NVCC = _nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (set CUDA_HOME or put nvcc on PATH)")


def test_nvcc_is_there():
    """The CUDA sources must compile on the development machines, which have nvcc (tests-and-kernels review D15:
    without it every check below skipped and the suite stayed green). A machine without a CUDA toolkit says so
    with PDGAN_SKIP_NVCC=1; then the nvcc checks skip with that reason."""
    if NVCC is None and os.environ.get("PDGAN_SKIP_NVCC") != "1":
        pytest.fail("nvcc not found: the CUDA sources cannot be checked. Install the CUDA toolkit (set CUDA_HOME or "
                    "put nvcc on PATH), or set PDGAN_SKIP_NVCC=1 to run the suite without these checks")


def test_cuda_sources_exist():
    assert {p.name for p in CU_FILES} >= {"adagn_cuda.cu", "posterior_cuda.cu"}


@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_cu_files_include_no_torch_headers(cu):
    """Torch headers would tie the kernels to a CUDA build of torch; only the bindings include them."""
    seen, todo = set(), [cu]
    while todo:  # the file and the local headers it includes
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        text = path.read_text()
        assert not TORCH_INCLUDE.search(text), f"{path.relative_to(CSRC)} includes a torch header"
        for name in re.findall(r'^\s*#\s*include\s*"([^"]+)"', text, re.MULTILINE):
            todo.append((path.parent / name).resolve())


class _Job:
    """A compiler run started in the background; result() waits for it."""

    def __init__(self, cmd: list[str], cwd: Path):
        self.cmd = [str(c) for c in cmd]
        self.proc = subprocess.Popen(self.cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._result = None

    def result(self) -> tuple[int, str]:
        if self._result is None:
            out, err = self.proc.communicate(timeout=900)
            self._result = (self.proc.returncode, out + err)
        return self._result

    def check(self) -> str:
        rc, log = self.result()
        assert rc == 0, f"{' '.join(self.cmd)}\n{log[-6000:]}"
        return log


def _cuda_include() -> Path | None:
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    candidates = [Path(h) / "include" for h in homes if h]
    candidates += [Path(NVCC).resolve().parents[1] / "include", Path("/usr/local/cuda/include")]
    return next((c for c in candidates if (c / "cuda_runtime.h").exists()), None)


LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^;{}]*?>)?)\s*<<<(.*?)>>>\s*\((.*?)\);", re.S)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Every compile of this file, started at once (they are independent; 2 cores halve the wall time):
    nvcc per .cu (its sm_90 PTX kept in keep/); g++ -fsyntax-only of the bindings as a CUDA build sees them;
    the .cu files built for the host against csrc/testing/cuda_host_emu.h (key 'emu', a shared library)."""
    if NVCC is None:
        pytest.skip("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    out = tmp_path_factory.mktemp("cuda_builds")
    (out / "keep").mkdir()
    jobs = {cu.name: _Job([NVCC, "-arch=sm_90", "-std=c++17", "-O3", "-Xptxas", "-v", "-keep", "-keep-dir",
                           out / "keep", "-c", cu, "-o", out / f"{cu.stem}.o"], out) for cu in CU_FILES}
    cxx, cuda_include = shutil.which("g++") or shutil.which("c++"), _cuda_include()
    if cxx and cuda_include:
        from torch.utils.cpp_extension import include_paths
        includes = [*include_paths(), sysconfig.get_paths()["include"], cuda_include, CSRC]
        jobs["bindings"] = _Job([cxx, "-std=c++20", "-fsyntax-only", "-Wall", "-DPDGAN_WITH_CUDA=1",
                                 "-DPDGAN_CUDA_ARCH_LIST=8.0,9.0+PTX",  # as setup.py passes it to g++
                                 "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE",  # the CPU wheel lacks this generated header
                                 *(f"-I{p}" for p in includes), CSRC / "bindings.cpp", CSRC / "bindings_cuda.cpp"],
                                out)
        sources = []
        for cu in CU_FILES:  # K<<<grid, block, smem, stream>>>(args); -> pdgan_emu::launch(..., [&] { K(args); });
            text, n = LAUNCH.subn(
                lambda m: f"pdgan_emu::launch({m.group(2)}, [&] {{ {m.group(1)}({m.group(3)}); }});", cu.read_text())
            assert n > 0, f"no kernel launch found in {cu.name}"
            sources.append(out / f"emu_{cu.name}")
            sources[-1].write_text('#include "testing/cuda_host_emu.h"\n' + text)
        jobs["emu"] = _Job([cxx, "-std=c++20", "-O1", "-fPIC", "-shared", "-pthread", "-w", f"-I{cuda_include}",
                            f"-I{CSRC}", *(f"-I{cu.parent}" for cu in CU_FILES), "-x", "c++", *sources,
                            "-o", out / "emu.so"], out)
    yield jobs, out
    for job in jobs.values():
        if job.proc.poll() is None:
            job.proc.kill()
            job.proc.communicate()


# ---------------------------------------------------------------------------------------------------
# setup.py's build as torch runs it

ROOT = CSRC.parent
# Runs setup.py's build_ext with torch.version.cuda set to nvcc's version (the CPU torch here has none)
# and torch's ninja step replaced by a stop: build.ninja is written exactly as for a CUDA torch.
_NINJA_DRIVER = """
import runpy, sys
import torch
import torch.utils.cpp_extension as ce
cuda_home, version, build = sys.argv[1:4]
torch.version.cuda = version
ce.CUDA_HOME = cuda_home
class Stop(Exception):
    pass
def stop(build_directory, verbose, error_prefix):
    raise Stop(build_directory)
ce._run_ninja_build = stop
sys.argv = ["setup.py", "build_ext", "--build-temp", build, "--build-lib", build]
try:
    runpy.run_path("setup.py", run_name="__main__")
except Exception as e:  # setup.py wraps the stop in its RuntimeError
    if "Stop" not in repr(e.__cause__) and not isinstance(e, Stop):
        raise
"""


def _nvcc_release() -> str:
    out = subprocess.run([NVCC, "--version"], capture_output=True, text=True, check=True).stdout
    return re.search(r"release (\d+\.\d+)", out).group(1)


def torch_build_commands(tmp: Path, arch: str | None) -> list[str]:
    """The compile commands torch's BuildExtension runs for setup.py's extension (CUDA build, PDGAN_CUDA_ARCH=arch;
    None: setup.py's default)."""
    build = tmp / "build"
    env = {**os.environ, "PDGAN_CUDA_ARCH": arch or "", "CUDA_HOME": str(Path(NVCC).resolve().parents[1])}
    env.pop("PDGAN_FORCE_CPU", None)
    env.pop("PDGAN_SKIP_EXT", None)
    proc = subprocess.run([sys.executable, "-c", _NINJA_DRIVER, env["CUDA_HOME"], _nvcc_release(), str(build)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert (build / "build.ninja").exists(), f"no build.ninja written:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    cmds = subprocess.run(["ninja", "-C", str(build), "-t", "commands"], capture_output=True, text=True,
                          check=True).stdout
    return [c for c in cmds.splitlines() if c.strip() and "-o " in c]


needs_ninja = pytest.mark.skipif(shutil.which("ninja") is None, reason="ninja not found (torch's builds need it)")


@pytest.fixture(scope="module")
def torch_nvcc_commands(tmp_path_factory):
    """The nvcc and c++ commands of a two-architecture build (PDGAN_CUDA_ARCH="8.0;9.0": a comma in the
    arch names is what broke every default build)."""
    return torch_build_commands(tmp_path_factory.mktemp("torch_build"), "8.0;9.0")


@needs_nvcc
@needs_ninja
def test_torch_build_commands_are_the_extensions(torch_nvcc_commands):
    nvcc = [c for c in torch_nvcc_commands if "nvcc" in c.split()[0]]
    assert sorted(Path(re.search(r" -c (\S+\.cu) ", c).group(1)).name for c in nvcc) == sorted(p.name for p in CU_FILES)
    for c in nvcc:  # setup.py's flags, torch's half/bf16 macros
        for flag in ("-DPDGAN_WITH_CUDA=1", "-gencode=arch=compute_80,code=sm_80",
                     "-gencode=arch=compute_90,code=compute_90", "-D__CUDA_NO_HALF_CONVERSIONS__"):
            assert flag in c.split(), f"{flag} missing from {c}"
    bindings = next(c for c in torch_nvcc_commands if c.split()[0] != "nvcc" and "bindings.cpp" in c)
    assert "-DPDGAN_CUDA_ARCH_LIST=8.0,9.0+PTX" in bindings.split()  # what _C.CUDA_ARCH_LIST reports
    from pdgan_infer.kernels._sources import source_digest  # what _C.SOURCE_DIGEST reports (stale-build check)
    assert f"-DPDGAN_SOURCE_DIGEST={source_digest(CSRC, True)}" in bindings.split()
    assert not any("PDGAN_SOURCE_DIGEST" in c for c in nvcc)


@needs_nvcc
@needs_ninja
def test_cu_files_build_with_torchs_nvcc_command(torch_nvcc_commands):
    """The install blocker: setup.py's -DPDGAN_CUDA_ARCH_LIST=8.0,9.0+PTX reached nvcc, which splits -D values
    at commas ('macro names must be identifiers'). Runs every nvcc command of the build, as ninja would."""
    jobs = [subprocess.Popen(["/bin/sh", "-c", c], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for c in torch_nvcc_commands if "nvcc" in c.split()[0]]
    for job, cmd in zip(jobs, [c for c in torch_nvcc_commands if "nvcc" in c.split()[0]]):
        out, _ = job.communicate(timeout=900)
        assert job.returncode == 0, f"{cmd}\n{out[-4000:]}"


@pytest.mark.slow
@needs_nvcc
@needs_ninja
def test_default_arch_list_builds_with_torchs_nvcc_command(tmp_path):
    """The default PDGAN_CUDA_ARCH (four architectures) with torch's flags."""
    cmds = [c for c in torch_build_commands(tmp_path, None) if "nvcc" in c.split()[0]]
    assert cmds and all("-gencode=arch=compute_120,code=compute_120" in c.split() for c in cmds)
    for c in cmds:
        proc = subprocess.run(["/bin/sh", "-c", c], capture_output=True, text=True, timeout=1800, check=False)
        assert proc.returncode == 0, f"{c}\n{proc.stdout}{proc.stderr[-4000:]}"


def _setup_module():
    import runpy
    return runpy.run_path(str(ROOT / "setup.py"), run_name="pdgan_setup")  # helpers only, no build


@needs_nvcc
def test_default_arch_list_is_known_to_nvcc():
    setup = _setup_module()
    archs = subprocess.run([NVCC, "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout.split()
    flags, names = setup["cuda_gencode_flags"](setup["DEFAULT_CUDA_ARCH"])
    assert "9.0" in [n.split("+")[0] for n in names.split(",")]  # H100/H200 in the default list
    for f in flags:
        assert re.search(r"arch=(compute_\d+)", f).group(1) in archs, f


@needs_nvcc
def test_nvcc_major_mismatch_builds_cpu_kernels(monkeypatch):
    """nvcc 13 with a cu12 torch made torch's _check_cuda_version abort the whole install; now the CPU
    kernels are built, with a warning that names the mismatch."""
    import torch
    import torch.utils.cpp_extension as ce
    setup = _setup_module()
    home = str(Path(NVCC).resolve().parents[1])
    major = int(_nvcc_release().split(".")[0])
    other = f"{major - 1}.8"
    assert setup["cuda_build_problem"](_nvcc_release(), home) is None
    assert "does not match torch's CUDA" in setup["cuda_build_problem"](other, home)
    assert "no runnable nvcc" in setup["cuda_build_problem"](other, "/nonexistent")
    monkeypatch.setattr(torch.version, "cuda", other)
    monkeypatch.setattr(ce, "CUDA_HOME", home)
    monkeypatch.delenv("PDGAN_FORCE_CPU", raising=False)
    monkeypatch.delenv("PDGAN_SKIP_EXT", raising=False)
    with pytest.warns(UserWarning, match="does not match torch's CUDA"):
        [ext], cmdclass = setup["native_extensions"]()
    assert not any(s.endswith((".cu", "_cuda.cpp")) for s in ext.sources) and "build_ext" in cmdclass
    monkeypatch.setattr(torch.version, "cuda", _nvcc_release())
    [ext], _ = setup["native_extensions"]()
    assert any(s.endswith(".cu") for s in ext.sources)


@needs_nvcc
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_cu_compiles_for_sm90(builds, cu):
    jobs, out = builds
    log = jobs[cu.name].check()
    assert (out / f"{cu.stem}.o").stat().st_size > 0
    # ptxas -v reports every kernel's local memory; register spills would cost bandwidth
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill stores", log)]
    assert spills and not any(spills), f"register spills in {cu.name}:\n{log}"


def _ptxas_kernels(log: str) -> dict[str, dict[str, int]]:
    """{mangled kernel: {"regs": registers, "stack": stack frame bytes}} from nvcc -Xptxas -v output."""
    kernels, props = {}, None
    for line in log.splitlines():
        if m := re.search(r"Compiling entry function '(\w+)'", line):
            kernels[m.group(1)] = {}
        elif m := re.search(r"Function properties for (\w+)", line):
            props = m.group(1)
        elif (m := re.search(r"(\d+) bytes stack frame", line)) and props in kernels:
            kernels[props]["stack"] = int(m.group(1))
        elif (m := re.search(r"Used (\d+) registers", line)) and kernels:
            kernels[next(reversed(kernels))]["regs"] = int(m.group(1))
    return kernels


@needs_nvcc
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_cu_kernels_use_no_stack_frame(builds, cu):
    """No kernel keeps a stack frame, except the Philox ones: 40 bytes for libdevice's double-precision
    sin / cos argument reduction (its slow path for huge arguments), which the normals never reach."""
    jobs, _ = builds
    kernels = _ptxas_kernels(jobs[cu.name].check())
    assert kernels and all("stack" in k and "regs" in k for k in kernels.values()), kernels
    for name, k in kernels.items():
        assert k["stack"] <= (40 if "philox" in name else 0), f"{name}: {k}"


# A global access in PTX: ld / st, optional .nc, optional .v2 / .v4, element type and width in bits
PTX_ACCESS = re.compile(r"^\s*(ld|st)\.global(?:\.nc)?(?:\.v(\d))?\.[a-z](\d+)\s", re.MULTILINE)
# Itanium-mangled template arguments of the kernels' storage types
MANGLED = {"float32": "f", "float16": "6__half", "bfloat16": "13__nv_bfloat16"}


def _ptx_entries(builds, cu_name: str) -> dict[str, str]:
    """{mangled kernel name: its PTX body} of the sm_90 PTX that nvcc kept for csrc/**/cu_name."""
    jobs, out = builds
    jobs[cu_name].check()
    ptx = (out / "keep" / (Path(cu_name).stem + ".ptx")).read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"\.entry (\w+)\((.*?)\n}", ptx, re.S)}


def _access_bytes(body: str, op: str, bits: int | None = None) -> list[int]:
    """Bytes moved by each global load (op "ld") or store ("st") of a kernel's PTX (of elements of `bits`)."""
    return [int(v or 1) * int(b) // 8 for o, v, b in PTX_ACCESS.findall(body) if o == op and bits in (None, int(b))]


def _entry(entries: dict[str, str], pattern: str) -> tuple[str, str]:
    found = [(k, v) for k, v in entries.items() if re.search(pattern, k)]
    assert len(found) == 1, f"{pattern}: {len(found)} kernels match: {[k for k, _ in found]}"
    return found[0]


@needs_nvcc
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_adagn_wide_kernels_move_16_byte_packs(builds, emulated, dtype):
    """In the sm_90 PTX of the kernels the plans launch for the presets' channels_last shapes with 4 channels per
    group, every global access of x and y is one 16-byte vector access: the wide fused kernel at cifar10's
    (100, 128, 32, 32) with 32 groups (16-bit: packs of two groups), and the wide statistics
    kernel of celebahq256's split plan at (100, 64, 256, 256) with 16 groups. Their other loads are gamma's and
    beta's float32 elements; the statistics kernel's stores are its float2 partials."""
    import torch
    entries, t = _ptx_entries(builds, "adagn_cuda.cu"), MANGLED[dtype]
    cifar = _adagn_plan(emulated, (100, 128, 32, 32), 32, getattr(torch, dtype), True)
    items = 8 if dtype == "float32" else 4  # packs per thread: 2 groups of 4096 elements, 256 threads
    name, body = _entry(entries, rf"adagn_fused_wide_kernelI{t}Li{cifar['vec']}ELi{items}E(Li{cifar['span']}E)?E")
    loads, stores = _access_bytes(body, "ld"), _access_bytes(body, "st")
    assert sorted(set(loads)) == [4, 16] and loads.count(16) == items, f"{name}: loads of {loads} bytes"
    assert stores == [16] * items, f"{name}: stores of {stores} bytes"
    celeba = _adagn_plan(emulated, (100, 64, 256, 256), 16, getattr(torch, dtype), True)
    name, body = _entry(entries, rf"adagn_stats_wide_kernelI{t}Li{celeba['vec']}ELi{celeba['span']}E")
    assert _access_bytes(body, "ld") == [16] * 4, f"{name}: loads of {_access_bytes(body, 'ld')} bytes"


@needs_nvcc
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_philox_kernels_store_a_block_as_one_pack(builds, dtype):
    """The Philox kernels (posterior step with and without x, and the per-row fill) write a block's 4 normals
    with one vector store (16 bytes in float32, 8 in 16-bit), and read x0 / xt as packs too; the scalar stores
    are the ragged / unaligned path."""
    entries, t = _ptx_entries(builds, "posterior_cuda.cu"), MANGLED[dtype]
    esize = 4 if dtype == "float32" else 2
    patterns = (rf"philox_rows_kernelI{t}E", rf"posterior_philox_kernelI{t}Lb0E", rf"posterior_philox_kernelI{t}Lb1E")
    for pattern in patterns:
        name, body = _entry(entries, pattern)
        stores = _access_bytes(body, "st")
        assert stores.count(4 * esize) == 1 and set(stores) == {esize, 4 * esize}, f"{name}: stores of {stores} bytes"
        if "Lb1E" in pattern:  # x0 and xt: one pack each (8 * esize bits: not the sin / cos tables' f64)
            assert _access_bytes(body, "ld", 8 * esize).count(4 * esize) == 2, f"{name}: {_access_bytes(body, 'ld')}"


@needs_nvcc
def test_bindings_syntax_as_cuda_build(builds):
    """bindings_cuda.cpp (and bindings.cpp's CUDA-only lines) are only compiled by CUDA builds; check them
    against torch's headers here."""
    jobs, _ = builds
    if "bindings" not in jobs:
        pytest.skip("needs g++ and the CUDA headers (cuda_runtime.h)")
    jobs["bindings"].check()


# ---------------------------------------------------------------------------------------------------
# The CUDA kernels executed on the CPU: csrc/testing/cuda_host_emu.h runs every CUDA thread as an OS
# thread, so the launchers' plans (fused / split, packed / scalar, NCHW / NHWC) and the kernels' index
# arithmetic are checked here against the references, without a GPU.


@pytest.fixture(scope="module")
def emulated(builds):
    """ctypes handle on the .cu launchers built for the host against the emulation header."""
    import ctypes
    jobs, out = builds
    if "emu" not in jobs:
        pytest.skip("needs g++ and the CUDA headers (cuda_runtime.h)")
    jobs["emu"].check()
    handle = ctypes.CDLL(str(out / "emu.so"))
    handle.pdgan_adagn_cuda.restype = ctypes.c_char_p
    handle.pdgan_adagn_cuda_workspace_bytes.restype = ctypes.c_size_t
    handle.pdgan_adagn_cuda_plan.restype = ctypes.c_char_p
    handle.pdgan_posterior_cuda.restype = ctypes.c_char_p
    return handle


def _adagn_params():
    import ctypes

    class Params(ctypes.Structure):  # csrc/adagn/adagn_cuda.h
        _fields_ = [("x", ctypes.c_void_p), ("y", ctypes.c_void_p), ("gamma", ctypes.c_void_p),
                    ("beta", ctypes.c_void_p), ("N", ctypes.c_int64), ("C", ctypes.c_int64), ("HW", ctypes.c_int64),
                    ("G", ctypes.c_int64), ("eps", ctypes.c_float), ("channels_last", ctypes.c_int),
                    ("dtype", ctypes.c_int), ("workspace", ctypes.c_void_p), ("gamma_stride", ctypes.c_int64),
                    ("beta_stride", ctypes.c_int64)]
    return Params


def _posterior_params():
    import ctypes

    class Params(ctypes.Structure):  # csrc/posterior/posterior_cuda.h
        _fields_ = [("x0", ctypes.c_void_p), ("xt", ctypes.c_void_p), ("noise", ctypes.c_void_p),
                    ("out", ctypes.c_void_p), ("numel", ctypes.c_int64), ("c1", ctypes.c_float),
                    ("c2", ctypes.c_float), ("sigma", ctypes.c_float), ("dtype", ctypes.c_int),
                    ("use_philox", ctypes.c_int), ("seed", ctypes.c_uint64), ("offset", ctypes.c_uint64)]
    return Params


def _dtype_code(dtype):
    import torch
    return {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}[dtype]


def _place(x, channels_last: bool, offset_bytes: int = 0):
    """x in the given layout, starting `offset_bytes` (0: 16-byte aligned storage; else 1 element or
    more) into its storage, which selects 16-byte, 8-byte or scalar packs in the kernels."""
    import torch
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    dense = x.contiguous(memory_format=fmt)
    if offset_bytes == 0:
        return dense
    offset = max(1, offset_bytes // x.element_size())
    storage = torch.empty(x.numel() + offset, dtype=x.dtype)[offset:]
    return storage.as_strided(x.shape, dense.stride()).copy_(dense)


# (shape, G): fused plan (slab <= 8192 elements), the wide fused plan (channels_last, Cg * element size < 32 bytes:
# one block per run of groups), the split plan (stats / finalize / apply) and its wide channels_last statistics
# (cg4-celeba, cg4-split-odd: runs of groups by pieces of pixels, the last piece ragged)
EMU_SHAPES = {"fused-odd": ((3, 12, 7, 5), 3), "fused": ((2, 32, 16, 16), 8), "split": ((1, 8, 64, 64), 2),
              "split-cg2": ((1, 8, 48, 48), 4), "cg4-cifar": ((1, 128, 16, 16), 32), "cg4-odd": ((2, 64, 5, 7), 16),
              "cg4-celeba": ((1, 64, 64, 64), 16), "cg4-split-odd": ((1, 32, 45, 47), 8),
              "split-33-pieces": ((1, 4, 182, 182), 1)}
# (shape label, channels_last, storage offset in bytes: 0 -> 16-byte packs, 8 -> 8-byte packs, 1 -> scalar)
EMU_CASES = [("fused-odd", False, 0), ("fused-odd", True, 0), ("fused", False, 0), ("fused", True, 8),
             ("fused", False, 1), ("split", False, 0), ("split", True, 0), ("split", False, 8), ("split", True, 1),
             ("split-cg2", True, 0), ("cg4-cifar", True, 0), ("cg4-odd", True, 0), ("cg4-odd", True, 8),
             ("cg4-odd", True, 1), ("cg4-celeba", True, 0), ("cg4-split-odd", True, 0), ("cg4-split-odd", True, 8),
             ("cg4-split-odd", True, 1),
             pytest.param("cg4-cifar", False, 0, marks=pytest.mark.slow),
             pytest.param("split-33-pieces", False, 0, marks=pytest.mark.slow)]
PLAN_KEYS = ("fused", "vec", "gb", "pieces", "span", "items", "wide")  # pdgan_adagn_cuda_plan's info


def _fused_cap(vec: int) -> int:
    """Elements of a group's slab the fused kernels hold (256 threads, 32 floats and at most 8 packs each)."""
    return 256 * vec * min(8, 32 // vec)


def _expected_pack(shape, groups, esize, address, channels_last) -> tuple[int, int]:
    """(elements per pack, groups per pack): the widest aligned pack (16, else 8 bytes) that never straddles a
    channel (NCHW) or a group (NHWC); or, NHWC and 16 bytes, a pack of two whole groups where the wide kernels
    take whole pairs of groups (G even; a pair's slab within the fused cap unless one group's is above it)."""
    hw, cg = shape[2] * shape[3], shape[1] // groups
    for b in (16, 8):
        v = b // esize
        if v == 1 or address % b:
            continue
        if (cg if channels_last else hw) % v == 0:
            return v, 1
        cap = _fused_cap(v)
        if channels_last and b == 16 and v == 2 * cg and groups % 2 == 0 and (cg * hw > cap or 2 * cg * hw <= cap):
            return v, 2
    return 1, 1


def _adagn_plan(emulated, shape, groups, dtype, channels_last, address=1 << 20) -> dict:
    """make_plan's choice for x and y at `address` (nothing is read there)."""
    import ctypes
    n, c, h, w = shape
    p = _adagn_params()(address, address, None, None, n, c, h * w, groups, 1e-6, int(channels_last),
                        _dtype_code(dtype), None, 0, 0)
    info = (ctypes.c_int64 * len(PLAN_KEYS))()
    err = emulated.pdgan_adagn_cuda_plan(ctypes.byref(p), info)
    assert err is None, err.decode()
    return dict(zip(PLAN_KEYS, info))


def _emulated_adagn(emulated, x, gamma, beta, groups, channels_last, eps=1e-6):
    """(y, plan info {PLAN_KEYS}) of the emulated CUDA launcher on x."""
    import ctypes

    import torch
    n, c, h, w = x.shape
    y = torch.empty_like(x)
    assert gamma.dtype == beta.dtype == torch.float32 and gamma.stride(1) == beta.stride(1) == 1
    p = _adagn_params()(x.data_ptr(), y.data_ptr(), gamma.data_ptr(), beta.data_ptr(), n, c, h * w, groups, eps,
                        int(channels_last), _dtype_code(x.dtype), None, gamma.stride(0), beta.stride(0))
    info = (ctypes.c_int64 * len(PLAN_KEYS))()
    err = emulated.pdgan_adagn_cuda_plan(ctypes.byref(p), info)
    assert err is None, err.decode()
    workspace = torch.empty(emulated.pdgan_adagn_cuda_workspace_bytes(ctypes.byref(p)), dtype=torch.uint8)
    p.workspace = workspace.data_ptr() if workspace.numel() else None
    err = emulated.pdgan_adagn_cuda(ctypes.byref(p), None)
    assert err is None, err.decode()
    return y, dict(zip(PLAN_KEYS, info))


@needs_nvcc
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_adagn_plan_for_the_preset_shapes(emulated, dtype):
    """The plans of the two presets' hottest channels_last AdaGN shapes. cifar10 (100, 128, 32, 32), 32 groups
    (Cg = 4): the wide fused kernel, in 16-bit with 16-byte packs of two groups (Cg = 4 alone allows 8 bytes).
    celebahq256 (100, 64, 256, 256), 16 groups: split, its statistics in the wide layout, a run of all 16
    groups (a 128-byte line of channels; fp32: two runs of 8 groups) by 128 pixels."""
    import torch
    dt = getattr(torch, dtype)
    cifar = _adagn_plan(emulated, (100, 128, 32, 32), 32, dt, True)
    celeba = _adagn_plan(emulated, (100, 64, 256, 256), 16, dt, True)
    if dtype == "float32":
        assert cifar == {"fused": 1, "vec": 4, "gb": 2, "pieces": 0, "span": 1, "items": 8, "wide": 1}, cifar
        assert celeba == {"fused": 0, "vec": 4, "gb": 8, "pieces": 512, "span": 1, "items": 0, "wide": 1}, celeba
    else:
        assert cifar == {"fused": 1, "vec": 8, "gb": 2, "pieces": 0, "span": 2, "items": 4, "wide": 1}, cifar
        assert celeba == {"fused": 0, "vec": 8, "gb": 16, "pieces": 512, "span": 2, "items": 0, "wide": 1}, celeba
    # 8-byte aligned storage: 8-byte packs of one group (fp32: a block holds 4096 elements, one group)
    cifar8 = _adagn_plan(emulated, (100, 128, 32, 32), 32, dt, True, address=(1 << 20) + 8)
    assert cifar8["vec"] * dt.itemsize == 8 and cifar8["span"] == 1, cifar8
    assert cifar8["gb"] == (1 if dtype == "float32" else 2) and cifar8["fused"] == 1, cifar8


@needs_nvcc
def test_emulated_launchers_do_not_take_the_blame_for_an_earlier_error(emulated):
    """tests-and-kernels review D18: last_error() after a launch read and cleared any CUDA error pending from
    earlier work (another library's kernel) and reported it as pdgan's launch failure. Now the launchers take a
    pending error first, say it came from earlier work and launch nothing; the next call runs normally."""
    import ctypes

    import torch
    x = torch.randn(1, 8, 4, 4)
    gamma, beta = torch.ones(1, 8), torch.zeros(1, 8)
    y = torch.full_like(x, 7.0)
    p = _adagn_params()(x.data_ptr(), y.data_ptr(), gamma.data_ptr(), beta.data_ptr(), 1, 8, 16, 2, 1e-6, 0,
                        _dtype_code(x.dtype), None, 8, 8)
    emulated.pdgan_emu_set_pending_error(700)  # cudaErrorIllegalAddress, left by someone else's kernel
    err = emulated.pdgan_adagn_cuda(ctypes.byref(p), None)
    assert err is not None and b"earlier work" in err, err
    assert torch.equal(y, torch.full_like(x, 7.0))  # nothing was launched
    assert emulated.pdgan_adagn_cuda(ctypes.byref(p), None) is None  # the pending error was taken
    assert not torch.equal(y, torch.full_like(x, 7.0))
    out, numel = torch.full((10,), 7.0), 10
    q = _posterior_params()(None, None, None, out.data_ptr(), numel, 0.0, 0.0, 1.0, 0, 1, 5, 0)
    emulated.pdgan_emu_set_pending_error(700)
    err = emulated.pdgan_posterior_cuda(ctypes.byref(q), None)
    assert err is not None and b"earlier work" in err and torch.equal(out, torch.full((10,), 7.0))


def _assert_half_ulp(y, x, gamma, beta, groups, eps, what):
    from pdgan_infer.kernels.reference import adagn_silu_ulp_error
    worst = adagn_silu_ulp_error(y, x, gamma, beta, groups, eps).max().item()
    assert worst <= 0.5, f"{what}: an element is {worst:.3f} ulp of {y.dtype} off (round to nearest: <= 0.5)"


@needs_nvcc
@pytest.mark.parametrize("label, channels_last, offset_bytes", EMU_CASES,
                         ids=[f"{a}-{'cl' if b else 'nchw'}-{c}B" for a, b, c in
                              [case.values if hasattr(case, "values") else case for case in EMU_CASES]])
def test_emulated_adagn_kernels(emulated, label, channels_last, offset_bytes):
    """Every plan within half an ulp of the float64 value (the emulation's exp / division / rsqrt are libm's,
    so the float32 allowance is the CPU's), in the three dtypes; the plan is the one the shape calls for."""
    import torch
    shape, groups = EMU_SHAPES[label]
    cg = shape[1] // groups
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = _place((torch.randn(shape) * 2 + 0.5).to(dtype), channels_last, offset_bytes)
        gamma, beta = torch.randn(shape[:2]) * 0.5 + 1.0, torch.randn(shape[:2])
        y, plan = _emulated_adagn(emulated, x, gamma, beta, groups, channels_last)
        esize = x.element_size()
        vec, span = _expected_pack(shape, groups, esize, x.data_ptr(), channels_last)
        assert (plan["vec"], plan["span"]) == (vec, span), f"{label} {dtype}: not {vec}-element packs: {plan}"
        assert plan["fused"] == (not label.startswith("split") and label not in ("cg4-celeba", "cg4-split-odd"))
        q = cg // vec  # span 1: packs per group and pixel
        # a group's run of channels narrower than a sector: the wide layout, with groups to pair it with
        if channels_last and cg * esize < 32 and (span > 1 or q & (q - 1) == 0):
            assert groups % plan["gb"] == 0 and plan["gb"] >= span, f"{label} {dtype}: {plan}"
            if plan["fused"]:
                assert (plan["gb"] > 1) == (groups % 2 == 0) == bool(plan["wide"]), f"{label} {dtype}: {plan}"
            else:
                assert plan["wide"] and plan["gb"] * cg * esize == min(128, shape[1] * esize), plan  # a line
            if label == "cg4-cifar":  # a cache line of channels per pixel (fp32: 8 groups; the fused cap in 16-bit)
                assert plan["gb"] * cg * esize >= 64, plan
        else:
            assert plan["gb"] == 1 and not plan["wide"], plan
        if label == "split-33-pieces":
            assert plan["pieces"] > 32  # the finalize warp merges several pieces per lane
        _assert_half_ulp(y, x, gamma, beta, groups, 1e-6, f"{label} {dtype}")


@needs_nvcc
@pytest.mark.parametrize("label, channels_last", [("fused-odd", False), ("cg4-odd", True), ("split", True)])
def test_emulated_adagn_reads_strided_style_rows(emulated, label, channels_last):
    """Review 1.3: gamma / beta are the two halves of the style Linear's float32 output (rows 2C apart). The
    binding copied them (gamma.to(kFloat).contiguous(): two allocations and copy kernels per AdaGN call);
    the launcher now reads the rows in place (gamma_stride / beta_stride), in the fused, wide and split plans."""
    import torch
    shape, groups = ((2, 8, 64, 64), 2) if label == "split" else EMU_SHAPES[label]  # two images: a second row
    n, c = shape[:2]
    style = torch.randn(n, 2 * c) * 0.5 + torch.cat([torch.ones(c), torch.zeros(c)])
    gamma, beta = style.chunk(2, dim=1)
    assert gamma.stride(0) == 2 * c and not gamma.is_contiguous()
    for dtype in (torch.float32, torch.bfloat16):
        x = _place((torch.randn(shape) * 2 + 0.5).to(dtype), channels_last)
        y, plan = _emulated_adagn(emulated, x, gamma, beta, groups, channels_last)
        assert plan["fused"] == (label != "split") and bool(plan["wide"]) == channels_last, plan
        _assert_half_ulp(y, x, gamma.contiguous(), beta.contiguous(), groups, 1e-6, f"{label} {dtype}")
    bindings = (CSRC / "bindings_cuda.cpp").read_text()  # the binding passes the row strides, copies no float32 rows
    assert "p.gamma_stride = g32.stride(0);" in bindings and "p.beta_stride = b32.stride(0);" in bindings


@needs_nvcc
@pytest.mark.parametrize("eps, channels_last", [(0.1, True), (1e-6, False),
                                                pytest.param(0.1, False, marks=pytest.mark.slow),
                                                pytest.param(1e-6, True, marks=pytest.mark.slow)],
                         ids=["0.1-cl", "1e-06-nchw", "0.1-nchw", "1e-06-cl"])
def test_emulated_adagn_eps_on_near_constant_groups(emulated, eps, channels_last):
    """eps reaches every plan (fused, wide, split): near-constant groups (variance ~1e-6, or 0 in 16-bit),
    where eps sets the result, beside a group of ordinary data."""
    import torch
    for shape, groups in (((2, 16, 5, 7), 4), ((1, 8, 64, 64), 2)):
        n, c = shape[:2]
        x = (torch.randn(n, groups, 1, 1, 1) * 2 + 1e-3 * torch.randn(n, groups, c // groups, *shape[2:]))
        x = x.reshape(shape)
        x[:, : c // groups] = torch.randn(n, c // groups, *shape[2:])
        gamma, beta = torch.randn(n, c) * 0.5 + 1.0, torch.randn(n, c)
        for dtype in (torch.float32, torch.bfloat16):
            xd = _place(x.to(dtype), channels_last)
            y, _ = _emulated_adagn(emulated, xd, gamma, beta, groups, channels_last, eps)
            _assert_half_ulp(y, xd, gamma, beta, groups, eps, f"{shape} eps={eps} {dtype}")


@needs_nvcc
@pytest.mark.parametrize("mode", ["noise", "none", "philox", "fill"])
def test_emulated_posterior_kernels(emulated, mode):
    """The posterior kernel (explicit noise, none, in-kernel Philox; and the plain fill of normals) within half
    an ulp of the float64 value; the Philox normals from the independent Python stream (philox_spec.py), not
    from the CPU extension (which shares csrc/philox.h with this build)."""
    import ctypes

    import torch
    from philox_spec import python_normals

    from pdgan_infer.kernels.reference import posterior_step_ulp_error
    c1, c2, sigma, seed = 0.7, 0.25, 0.3, 2**40 + 3
    for n, offset, offset_bytes in ((1, 0, 0), (37, 3, 1), (1030, 5, 0), (4099, 0, 1)):
        spec = (torch.tensor(python_normals(n, seed, offset), dtype=torch.float32) if mode in ("philox", "fill")
                else None)
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            x0, xt, z = (_place(torch.randn(n).to(dtype), False, offset_bytes) for _ in range(3))
            out = torch.empty(n, dtype=dtype)
            ptrs = {"noise": (x0, xt, z), "none": (x0, xt, None), "philox": (x0, xt, None), "fill": (None,) * 3}[mode]
            p = _posterior_params()(*(t.data_ptr() if t is not None else None for t in ptrs), out.data_ptr(), n,
                                    c1, c2, 1.0 if mode == "fill" else 0.0 if mode == "none" else sigma,
                                    _dtype_code(dtype), int(mode in ("philox", "fill")), seed, offset)
            err = emulated.pdgan_posterior_cuda(ctypes.byref(p), None)
            assert err is None, err.decode()
            where = f"{mode} {dtype} n={n} offset={offset}"
            if mode == "fill":  # the normals themselves, rounded once to the dtype
                torch.testing.assert_close(out.float(), spec.to(dtype).float(), rtol=2e-7, atol=2e-7,
                                           msg=lambda m, where=where: f"{where}: {m}")
                continue
            args = {"noise": (x0, xt, c1, c2, sigma, z), "none": (x0, xt, c1, c2, 0.0, None),
                    "philox": (x0, xt, c1, c2, sigma, spec)}[mode]
            worst = posterior_step_ulp_error(out, *args).max().item()
            assert worst <= 0.5, f"{where}: {worst:.3f} ulp"


@needs_nvcc
def test_emulated_philox_rows_kernel(emulated):
    """The CUDA kernel of draw_noise's per-image rows against the pure-torch reference (and the spec)."""
    import ctypes

    import torch

    from pdgan_infer.kernels.reference import philox_normal_rows_ref

    class Params(ctypes.Structure):  # csrc/posterior/posterior_cuda.h
        _fields_ = [("out", ctypes.c_void_p), ("seeds", ctypes.c_void_p), ("rows", ctypes.c_int64),
                    ("cols", ctypes.c_int64), ("dtype", ctypes.c_int), ("offset", ctypes.c_uint64)]
    emulated.pdgan_philox_rows_cuda.restype = ctypes.c_char_p
    native = _native_cpu()
    seeds = torch.tensor([0, 5, 2**40 + 3, -1], dtype=torch.int64)
    # (cols, stream offset, output's first element in its storage): blocks stored as packs where aligned, the
    # ragged head / tail and misaligned rows (cols % 4 != 0, or an offset storage) element by element
    for cols, offset, shift in ((1, 0, 0), (37, 3, 0), (37, 3, 1), (1030, 2**34 + 1, 0), (1030, 2**34 + 1, 1),
                                (1032, 0, 0), (1032, 6, 2), (1032, 6, 3)):
        ref = philox_normal_rows_ref(seeds, cols, offset)
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            storage = torch.full((len(seeds) * cols + 4,), float("nan"), dtype=dtype)
            out = storage[shift:shift + len(seeds) * cols].view(len(seeds), cols)
            p = Params(out.data_ptr(), seeds.data_ptr(), len(seeds), cols, _dtype_code(dtype), offset)
            err = emulated.pdgan_philox_rows_cuda(ctypes.byref(p), None)
            assert err is None, err.decode()
            where = f"cols={cols} offset={offset} shift={shift} {dtype}"
            torch.testing.assert_close(out.float(), ref.to(dtype).float(), rtol=2e-7, atol=2e-7,
                                       msg=lambda m, w=where: f"{w}: {m}")
            if native is not None:  # the CPU kernel shares csrc/philox.h: the same bits
                for r, seed in enumerate(seeds.tolist()):
                    assert torch.equal(out[r], native.philox_normal(cols, seed, offset=offset, dtype=dtype)), where


def _native_cpu():
    """pdgan_infer.kernels.native when its CPU kernels are built, else None."""
    try:
        from pdgan_infer.kernels import native
    except ImportError:
        return None
    return native if native.available("cpu") else None


@needs_nvcc
def test_emulated_posterior_philox_packs_match_the_scalar_path(emulated):
    """The Philox posterior step (and fill) writes a block's 4 values as one pack where the block lies inside
    the tensor and every tensor is aligned there, else element by element: the same bits for every placement of
    out, x0 and xt in their storage (shifts 0-3 elements: packs, or misaligned and scalar), stream offset and
    ragged length; the fill equals the CPU kernel's normals."""
    import ctypes

    import torch
    native = _native_cpu()
    c1, c2, sigma, seed = 0.7, 0.25, 0.3, 2**40 + 3
    for n, offset in ((1030, 0), (1030, 3), (1029, 6)):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            x0, xt = torch.randn(n).to(dtype), torch.randn(n).to(dtype)
            for fill in (False, True):
                results = []
                for shifts in ((0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3), (0, 1, 2)):  # out, x0, xt
                    out, a, b = (torch.empty(n + 4, dtype=dtype)[k:k + n] for k in shifts)
                    a.copy_(x0)
                    b.copy_(xt)
                    ptrs = (None, None) if fill else (a.data_ptr(), b.data_ptr())
                    p = _posterior_params()(*ptrs, None, out.data_ptr(), n, c1, c2, 1.0 if fill else sigma,
                                            _dtype_code(dtype), 1, seed, offset)
                    err = emulated.pdgan_posterior_cuda(ctypes.byref(p), None)
                    assert err is None, err.decode()
                    results.append(out.clone())
                where = f"n={n} offset={offset} {dtype} {'fill' if fill else 'step'}"
                assert all(torch.equal(r, results[0]) for r in results[1:]), where
                if fill and native is not None:
                    assert torch.equal(results[0], native.philox_normal(n, seed, offset=offset, dtype=dtype)), where
