"""Device defaults that matter on a GPU, checked on the CPU with the device's properties faked."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pdgan_infer.optimize import MAX_DEFAULT_BATCH, default_batch_size


@pytest.mark.parametrize("gib, cifar10, celebahq256", [(141, 256, 35), (80, 256, 20), (16, 256, 4), (8, 128, 2),
                                                        (2, 32, 1)])
def test_cuda_default_batch_scales_with_gpu_memory(monkeypatch, gib, cifar10, celebahq256):
    """gpu-review 6.7: a fixed 256 * 32 * 32 pixels gave celebahq256 a batch of 4 on a 141 GB H200. The budget
    is 256 * 32 * 32 pixels per 16 GiB: 35 celebahq256 images on an H200, 256 cifar10 ones (the cap)."""
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: SimpleNamespace(total_memory=gib * 2**30))
    assert default_batch_size(32, "cuda") == cifar10
    assert default_batch_size(256, torch.device("cuda:0")) == celebahq256
    assert default_batch_size(32, "cuda") <= MAX_DEFAULT_BATCH


def test_cpu_default_batch_is_unchanged():
    assert default_batch_size(32, "cpu") == 64 and default_batch_size(256, "cpu") == 1
    assert default_batch_size(8, "cpu") == MAX_DEFAULT_BATCH  # 1024 8x8 images would be over the cap
