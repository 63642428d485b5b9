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


def test_claim_out_refuses_files_pdgan_did_not_write(tmp_path):
    """A fresh run over a folder of the user's files would replace their config.json and samples/final.png and
    append to their metrics.jsonl: refused without --overwrite, which then deletes only the run's file names."""
    from pdgan_infer.files import atomic_write_bytes, record_written
    from pdgan_train.config import TrainingError
    from pdgan_train.rundir import claim_out, remove_run

    (tmp_path / "samples").mkdir()
    (tmp_path / "config.json").write_text('{"mine": 1}')
    (tmp_path / "samples" / "final.png").write_bytes(b"my picture")
    (tmp_path / "notes.txt").write_text("not a run file")
    with pytest.raises(TrainingError, match=r"holds files that pdgan did not write and the run would replace "
                                            r"\(.*config.json and 1 more\); choose another --out, or --overwrite"):
        claim_out(tmp_path, overwrite=False)
    assert claim_out(tmp_path, overwrite=True) is True
    remove_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "samples"]
    # what a killed run wrote (no checkpoint yet) is its own: a new launch goes on without --overwrite
    atomic_write_bytes(tmp_path / "config.json", b"{}")
    atomic_write_bytes(tmp_path / "samples" / "step_0000001.png", b"png")
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write("{}\n")
    record_written(tmp_path / "metrics.jsonl")
    assert claim_out(tmp_path, overwrite=False) is False


def test_a_save_pretrained_folder_is_not_called_a_run(tmp_path):
    import torch

    from pdgan_infer import PDGAN
    from pdgan_infer.hub import save_pretrained
    from pdgan_train.config import TrainingError
    from pdgan_train.rundir import claim_out

    torch.manual_seed(0)
    folder = save_pretrained(PDGAN("digits", with_latent=False), tmp_path / "m", card=False)
    for overwrite in (False, True):
        with pytest.raises(TrainingError, match="is a model folder written by save_pretrained .*not a pdgan-train run"):
            claim_out(folder, overwrite)
