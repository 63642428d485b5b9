"""Peak memory over a block: the CUDA allocator's peak on a GPU, the peak-RSS delta on the CPU (/proc on Linux)."""
from __future__ import annotations

import gc
import resource
from pathlib import Path

import torch


class PeakMemory:
    """Peak memory over a block: CUDA allocator peak on GPU, peak-RSS delta on the CPU (see module doc)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            self.free0 = torch.cuda.mem_get_info(self.device)[0]
        else:
            _release_free_heap()
            self.hwm_reset = _reset_hwm()
            self.base = _rss_kb() if self.hwm_reset else _maxrss_kb()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
            self.device_mb = (self.free0 - torch.cuda.mem_get_info(self.device)[0]) / 2**20
        else:
            peak = _status_kb("VmHWM") if self.hwm_reset else _maxrss_kb()
            self.peak_mb, self.device_mb = max(0, peak - self.base) / 1024, None


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _release_free_heap() -> None:
    """Hand the C heap's free pages back to the OS (glibc malloc_trim) so that a block's allocations show up in
    its RSS peak: memory freed by earlier work (an earlier backend's batches) is otherwise reused without
    raising the RSS, and the block would look smaller than it is. No-op without glibc."""
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_kb() -> int:
    return _status_kb("VmRSS")


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
