"""gpu-review.md points whose fix lives in files without a test file of their own (docs/gpu-readiness.md
lists every point with its test): TensorRT's execution stream (4.2), with TensorRT and CUDA streams faked."""
from __future__ import annotations

import torch

from pdgan_infer.export import tensorrt


def test_tensorrt_executes_on_its_own_stream_ordered_with_the_callers(monkeypatch):
    """Review 4.2: execute_async_v3 got the caller's current stream, the legacy default stream unless the
    caller set one (TensorRT then adds a cudaStreamSynchronize per call). Now the runner's own stream, which
    waits for the caller's stream before and is waited for after; the tensors are recorded on it."""
    log = []

    class Stream:
        def __init__(self, name, handle):
            self.name, self.cuda_stream = name, handle

        def wait_stream(self, other):
            log.append(f"{self.name} waits {other.name}")

    caller, own = Stream("caller", 0), Stream("own", 0x7E57)

    class Context:
        def set_input_shape(self, name, shape):
            pass

        def set_tensor_address(self, name, ptr):
            pass

        def get_tensor_shape(self, name):
            return (2, 3, 4, 4)

        def execute_async_v3(self, handle):
            log.append(f"execute on {handle:#x}")
            return True

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: caller)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, stream: log.append(f"record on {stream.name}"))
    runner = object.__new__(tensorrt.TensorRTRunner)
    runner.graph, runner.device, runner.context = "sampler", torch.device("cpu"), Context()
    runner.stream = own
    runner.dtypes = {name: torch.float32 for name in (*tensorrt.INPUTS["sampler"], tensorrt.OUTPUT)}
    inputs = {"x_T": torch.zeros(2, 3, 4, 4), "z_T": torch.zeros(2, 8), "z": torch.zeros(2, 2, 8),
              "eps": torch.zeros(2, 2, 3, 4, 4)}
    out = runner._run(inputs)
    assert out.shape == (2, 3, 4, 4)
    assert log[0] == "own waits caller" and log[1] == "execute on 0x7e57" and log[-1] == "caller waits own"
    assert log[2:-1] == ["record on own"] * 5  # four inputs and the output
