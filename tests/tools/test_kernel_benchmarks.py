"""benchmarks/test_bench_kernels.py: what its kernel benchmarks time."""
from __future__ import annotations

import torch


# regression: GPU review 6.6
def test_kernel_benchmarks_time_the_engines_layout():
    """benchmarks/test_bench_kernels.py timed AdaGN in NCHW only; the engine runs channels_last."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "test_bench_kernels.py"
    spec = importlib.util.spec_from_file_location("bench_kernels_layouts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    marks = {m.args[0]: m.args[1] for m in module.test_adagn_silu.pytestmark if m.name == "parametrize"}
    assert list(marks["layout"])[0] == "channels_last" and set(marks["layout"]) == {"channels_last", "nchw"}
    assert module.LAYOUTS["channels_last"] == torch.channels_last
