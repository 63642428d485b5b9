"""The run directory's writes (pdgan_train.rundir.writing): a failed write is one line naming the file and the
cause (a full disk, a file-size limit), with no temporary left."""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest


# regression: reliability re-run, train.disk.100mb.resume, train.disk.40kb.samples
def test_failed_training_write_names_the_file_once(tmp_path):
    """A training write that hits a full disk or a
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


# regression: reliability re-run, train.disk.1mb
@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE is POSIX")
def test_torch_save_cut_short_by_a_file_size_limit_says_so(tmp_path):
    """Under a file-size limit: torch.save's "[enforce fail ...] unexpected pos" has no
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
