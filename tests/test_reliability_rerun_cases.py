"""Cases of the reliability review that its re-run (benchmarks/reliability_rerun.py,
benchmarks/results/2026-11-30-reliability-rerun.md) still found unclean on the landed code, each pinned
here as it was found: the case id of the re-run, then what must hold."""
from __future__ import annotations

import errno
import os

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


def test_failed_training_write_names_the_file_once(tmp_path):
    """train.disk.100mb.resume, train.disk.40kb.samples: a training write that hits a full disk or a
    file-size limit said "cannot write P (cannot write P (File too large); ...)": atomic_path names the file
    now, and the training wrapper must not wrap that message again."""
    from pdgan_infer.checkpoint import atomic_path
    from pdgan_train.config import TrainingError
    from pdgan_train.rundir import writing

    path = tmp_path / "config.json"
    with pytest.raises(TrainingError) as e:
        with writing(path), atomic_path(path):
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    assert str(e.value) == f"cannot write {path} (File too large); free space or choose another output"
    assert list(tmp_path.iterdir()) == []  # no temporary left
