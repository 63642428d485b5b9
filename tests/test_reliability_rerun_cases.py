"""Cases of the reliability review that its re-run (benchmarks/reliability_rerun.py,
benchmarks/results/2026-11-30-reliability-rerun.md) still found unclean on the landed code, each pinned
here as it was found: the case id of the re-run, then what must hold."""
from __future__ import annotations

import pytest
import torch
from test_edit import tiny_config  # tests/ is on sys.path: the edit tests' shrunken digits model

from pdgan_infer import PDGAN, Engine


@pytest.fixture(scope="module")
def engine() -> Engine:
    torch.manual_seed(0)
    return Engine(PDGAN(tiny_config()), backend="torch", device="cpu", batch_size=4)


def test_generate_from_meta_latents_is_a_value_error(engine):
    """api.genfrom.15: z_T on the meta device ended in "RuntimeError: Tensor.item() cannot be called on meta
    tensors" (from the finiteness check); it is a one-line ValueError naming z_T."""
    nz = engine.config.generator.nz
    with pytest.raises(ValueError, match="z_T is on the meta device"):
        engine.generate_from(torch.zeros(2, nz, device="meta"), seed=0)
    with pytest.raises(ValueError, match="z_T is on the meta device"):
        engine.generate(2, seed=0, z_T=torch.zeros(nz, device="meta"))


def test_encode_meta_images_is_a_value_error(engine):
    """The same for encode (a float batch on the meta device)."""
    r = engine.config.resolution
    with pytest.raises(ValueError, match="images is on the meta device"):
        engine.encode(torch.zeros(2, 3, r, r, device="meta"))
