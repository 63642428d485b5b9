"""The benchmark's environment: device name, versions, git commit, load: the JSON report's header."""
from __future__ import annotations

import datetime
import importlib.util
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _version(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return getattr(__import__(module), "__version__", "?")
    except Exception as e:  # noqa: BLE001 - a broken optional install must not stop the benchmark
        return f"unimportable ({type(e).__name__})"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10,
                             check=False)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def header(device: torch.device, argv: list[str]) -> dict[str, Any]:
    return {"device": str(device), "device_name": device_name(device), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "triton": _version("triton"), "onnxruntime": _version("onnxruntime"),
                         "onnx": _version("onnx"), "openvino": _version("openvino"),
                         "tensorrt": _version("tensorrt"), "numpy": np.__version__,
                         "cuda": torch.version.cuda},
            "git_commit": git_commit(), "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "platform": platform.platform(), "command": "pdgan-bench " + " ".join(argv),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"), **cpu_choice(device)}


def cpu_choice(device: torch.device) -> dict[str, Any]:
    """CPU runs: the CPU features the native backend chooses its bf16 convolutions by (`cpu_features`) and that
    choice (`native_bf16_convolutions`), so a table says which kernels its native bf16 row ran."""
    if device.type != "cpu":
        return {}
    from ..kernels import native
    caps = torch.cpu.get_capabilities()
    return {"cpu_features": {k: bool(caps.get(k, False)) for k in ("avx512_f", "avx512_bf16", "amx_bf16")},
            "native_bf16_convolutions": "Winograd F(2x2, 3x3)" if native.winograd_bf16_preferred()
            else "oneDNN direct"}
