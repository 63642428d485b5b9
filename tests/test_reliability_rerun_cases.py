"""Cases of the reliability review that its re-run (benchmarks/reliability_rerun.py,
benchmarks/results/2026-11-30-xeon-amx-reliability-rerun.md) still found unclean on the landed code, each pinned
here as it was found: the case id of the re-run, then what must hold."""
from __future__ import annotations

import errno
import os
import subprocess
import sys

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


@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE is POSIX")
def test_torch_save_cut_short_by_a_file_size_limit_says_so(tmp_path):
    """train.disk.1mb under a file-size limit: torch.save's "[enforce fail ...] unexpected pos" has no
    errno, and the message then only gave the free disk space (plenty); it names the limit too. A real
    RLIMIT_FSIZE in a subprocess (CPython ignores SIGXFSZ, so the write fails instead of killing it)."""
    code = ("import resource, sys, torch\nfrom pathlib import Path\n"
            "from pdgan_train.config import TrainingError\nfrom pdgan_train.rundir import writing\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\np = Path(sys.argv[1])\n"
            "try:\n    with writing(p):\n        torch.save({'w': torch.zeros(100_000)}, p)\n"
            "except TrainingError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "train_state.pt")], check=False,
                         capture_output=True, text=True, timeout=120)
    msg = out.stdout.strip()
    assert msg.startswith(f"cannot write {tmp_path / 'train_state.pt'} (") and "\n" not in msg, out.stdout + out.stderr
    assert "files of at most 65536 bytes (ulimit -f)" in msg, msg
