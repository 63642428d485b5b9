"""Builds the optional native extension `pdgan_infer._C` (csrc/); all metadata is in pyproject.toml.

    pip install --no-build-isolation -e .            # CPU kernels; + CUDA kernels when torch has CUDA

Environment:
    PDGAN_SKIP_EXT=1       install without the extension (pdgan_infer.kernels.native reports unavailable)
    PDGAN_CUDA_ARCH        CUDA architectures, default "8.0;9.0;10.0;12.0" (A100, H100/H200, B200, RTX 50);
                           "+PTX" on an entry also embeds PTX (the last entry always gets PTX, so newer
                           GPUs can JIT the kernels); one entry (e.g. "9.0") builds fastest
    PDGAN_FORCE_CPU=1      build only the CPU kernels even when torch and nvcc have CUDA
    MAX_JOBS               parallel compile jobs (torch.utils.cpp_extension)

The CUDA kernels are built when torch was built with CUDA (torch.version.cuda) and a CUDA toolkit is found
(CUDA_HOME / nvcc) whose major version is torch's (nvcc 12.x cannot build for a cu13x torch: torch's build
would abort the whole install, so the CPU kernels are built instead, with a warning). Kernels are compiled
here, ahead of time, never at import.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import warnings

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
FIX = ("fix the compiler error above, or install without native kernels: "
       "PDGAN_SKIP_EXT=1 pip install --no-build-isolation -e .")


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


def cuda_gencode_flags(spec: str) -> tuple[list[str], str]:
    """'8.0;9.0+PTX' -> nvcc -gencode flags (PTX for '+PTX' entries and the last one) and '8.0,9.0+PTX'."""
    archs = [a for a in re.split(r"[;,\s]+", spec.strip()) if a]
    if not archs:
        raise ValueError(f"PDGAN_CUDA_ARCH={spec!r} names no architecture (expected e.g. '8.0;9.0')")
    flags, names = [], []
    for i, arch in enumerate(archs):
        ptx = arch.upper().endswith("+PTX") or i == len(archs) - 1
        base = arch.split("+")[0]
        if not re.fullmatch(r"\d+\.\d+[af]?", base):
            raise ValueError(f"PDGAN_CUDA_ARCH entry {arch!r} is not of the form '9.0' or '9.0+PTX'")
        num = base.replace(".", "")
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
        if ptx:
            flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
        names.append(base + ("+PTX" if ptx else ""))
    return flags, ",".join(names)


DEFAULT_CUDA_ARCH = "8.0;9.0;10.0;12.0"


def nvcc_version(cuda_home: str) -> str | None:
    """'13.0' from `CUDA_HOME/bin/nvcc --version`, or None when there is no runnable nvcc."""
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"release (\d+\.\d+)", out)
    return found.group(1) if found else None


def cuda_build_problem(torch_cuda: str | None, cuda_home: str | None) -> str | None:
    """None when the CUDA kernels can be built; otherwise why not (the build falls back to CPU kernels)."""
    if torch_cuda is None:
        return "torch has no CUDA"
    if cuda_home is None:
        return "no CUDA toolkit found (set CUDA_HOME)"
    found = nvcc_version(cuda_home)
    if found is None:
        return f"no runnable nvcc in {cuda_home}/bin (set CUDA_HOME to a CUDA toolkit)"
    if found.split(".")[0] != torch_cuda.split(".")[0]:
        return (f"nvcc {found} in {cuda_home} does not match torch's CUDA {torch_cuda} (the major versions must be "
                f"equal); point CUDA_HOME at a CUDA {torch_cuda.split('.')[0]}.x toolkit")
    return None


def source_digest(with_cuda: bool) -> str:
    """The digest of the csrc/ files this build compiles (pdgan_infer/kernels/_sources.py, loaded by path:
    the package and torch need not be importable here); baked in as _C.SOURCE_DIGEST."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_pdgan_sources",
                                                  os.path.join(ROOT, "pdgan_infer", "kernels", "_sources.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.source_digest(os.path.join(ROOT, "csrc"), with_cuda)


def native_extensions():
    """([extension], cmdclass) for pdgan_infer._C, or ([], {}) when PDGAN_SKIP_EXT=1."""
    if _flag("PDGAN_SKIP_EXT"):
        print("pdgan: PDGAN_SKIP_EXT=1, not building pdgan_infer._C", file=sys.stderr)
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError as e:
        raise RuntimeError(
            "pdgan: building pdgan_infer._C needs torch importable at build time; install torch first and "
            "use `pip install --no-build-isolation -e .`, or set PDGAN_SKIP_EXT=1") from e

    class PdganBuildExtension(BuildExtension):
        """BuildExtension that names the way out when the native build fails."""

        def run(self):
            try:
                super().run()
            except Exception as e:  # noqa: BLE001 - re-raised with context
                print("\n" + "=" * 78 + f"\npdgan: building the native extension pdgan_infer._C failed:\n  {e}\n"
                      f"pdgan: {FIX}\n" + "=" * 78, file=sys.stderr)
                raise RuntimeError(f"pdgan: building pdgan_infer._C failed ({e}); {FIX}") from e

    csrc = os.path.join(ROOT, "csrc")
    rel = lambda paths: sorted(os.path.relpath(p, ROOT) for p in paths)  # noqa: E731
    cpp = rel(p for p in glob.glob(os.path.join(csrc, "**", "*.cpp"), recursive=True)
              if not p.endswith("_cuda.cpp"))
    problem = "PDGAN_FORCE_CPU=1" if _flag("PDGAN_FORCE_CPU") else cuda_build_problem(torch.version.cuda, CUDA_HOME)
    with_cuda = problem is None
    # -fno-trapping-math lets GCC if-convert (and so vectorise) the branch-free float selects; torch
    # itself is built with the same two flags.
    # the digest is a bare token for the C++ compiler only (bindings.cpp stringifies it, like the arch list)
    # -fopenmp (compile only): at::parallel_for is inline code in ATen's headers that only runs in parallel when
    # the extension itself is compiled with OpenMP (without it every kernel's parallel_for runs on one thread).
    # The link adds no libgomp of its own: the GOMP_* calls resolve through libtorch_cpu's dependencies to the
    # OpenMP runtime torch itself loaded (whatever its file name in that wheel), so there is one runtime and
    # torch.set_num_threads governs the kernels too.
    openmp = ["-fopenmp"] if sys.platform.startswith("linux") and torch.backends.openmp.is_available() else []
    cxx = ["-O3", "-g0", "-fno-trapping-math", "-fno-math-errno", "-fvisibility=hidden", *openmp,
           f"-DPDGAN_SOURCE_DIGEST={source_digest(with_cuda)}"]
    headers = rel(glob.glob(os.path.join(csrc, "**", "*.h"), recursive=True))
    common = dict(name="pdgan_infer._C", include_dirs=[csrc], depends=headers)
    if with_cuda:
        gencode, arch_names = cuda_gencode_flags(os.environ.get("PDGAN_CUDA_ARCH") or DEFAULT_CUDA_ARCH)
        sources = cpp + rel(glob.glob(os.path.join(csrc, "**", "*_cuda.cpp"), recursive=True)) + rel(
            glob.glob(os.path.join(csrc, "**", "*.cu"), recursive=True))
        # The arch list goes to the C++ compiler only (bindings.cpp reports it): torch hands define_macros
        # to nvcc as well, and nvcc splits -D values at commas ("macro names must be identifiers").
        ext = CUDAExtension(sources=sources, define_macros=[("PDGAN_WITH_CUDA", "1")],
                            extra_compile_args={"cxx": [*cxx, f"-DPDGAN_CUDA_ARCH_LIST={arch_names}"],
                                                "nvcc": ["-O3", "-lineinfo", *gencode]}, **common)
        print(f"pdgan: building pdgan_infer._C with CUDA {torch.version.cuda} kernels for {arch_names}",
              file=sys.stderr)
    else:
        ext = CppExtension(sources=cpp, extra_compile_args={"cxx": cxx}, **common)
        print(f"pdgan: building pdgan_infer._C with CPU kernels only ({problem})", file=sys.stderr)
        if torch.version.cuda is not None and not _flag("PDGAN_FORCE_CPU"):
            warnings.warn(f"pdgan: torch has CUDA {torch.version.cuda} but the CUDA kernels are not built: {problem}; "
                          "the native backend runs on the CPU only", stacklevel=1)
    return [ext], {"build_ext": PdganBuildExtension.with_options(use_ninja=True)}


if __name__ == "__main__":  # pip / setuptools run this file as __main__; tests import its helpers
    ext_modules, cmdclass = native_extensions()
    setup(ext_modules=ext_modules, cmdclass=cmdclass)
