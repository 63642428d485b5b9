"""pdgan-generate: one PNG per seed (EDM's convention), decoded with Pillow and compared with
`Engine.generate(seeds=...)`; seed lists, resuming, npz, torchrun with two gloo ranks, CLI conventions."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pdgan_infer import __version__
from pdgan_infer.cli.generate import main
from pdgan_infer.engine import Engine
from pdgan_infer.files import MANIFEST
from pdgan_infer.seeds import parse_seeds

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits() -> Engine:
    return Engine.from_pretrained("digits", device="cpu")


def read_pngs(folder: Path, seeds) -> np.ndarray:
    out = []
    for s in seeds:
        with Image.open(folder / f"{s:06d}.png") as im:
            assert im.format == "PNG" and im.mode == "RGB"
            out.append(np.asarray(im))
    return np.stack(out)


def test_parse_seeds():
    assert parse_seeds("0-9,20,30-32") == [*range(10), 20, 30, 31, 32]
    assert parse_seeds(" 5 ") == [5] and parse_seeds("3-3") == [3]
    for bad, msg in (("a-b", "bad seed"), ("5-2", "end is below"), ("", "no seeds"), ("-3", "bad seed"),
                     ("4294967296", "outside")):
        with pytest.raises(ValueError, match=msg):
            parse_seeds(bad)


def test_writes_the_images_of_engine_generate(digits, tmp_path):
    assert main(["digits", "--seeds", "0-15", "--outdir", str(tmp_path), "-q", "--device", "cpu"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, *(f"{s:06d}.png" for s in range(16))]
    np.testing.assert_array_equal(read_pngs(tmp_path, range(16)), digits.generate(seeds=range(16)))


def test_seed_lists_and_resume(digits, tmp_path):
    spec, seeds = "3-5,40,7", [3, 4, 5, 40, 7]
    assert main(["digits", "--seeds", spec, "--outdir", str(tmp_path), "-q", "--batch-size", "2"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MANIFEST, *(f"{s:06d}.png" for s in seeds)])
    want = digits.generate(seeds=seeds, batch_size=2)
    np.testing.assert_array_equal(read_pngs(tmp_path, seeds), want)
    # resume: a file that is there is kept as is (even if it is not the image), a missing one is made again
    marker = np.zeros((32, 32, 3), np.uint8)
    Image.fromarray(marker).save(tmp_path / "000040.png")
    (tmp_path / "000004.png").unlink()
    assert main(["digits", "--seeds", spec, "--outdir", str(tmp_path), "-q", "--batch-size", "2"]) == 0
    np.testing.assert_array_equal(read_pngs(tmp_path, [40])[0], marker)
    np.testing.assert_array_equal(read_pngs(tmp_path, [3, 4, 5, 7]), want[[0, 1, 2, 4]])


def test_npz(digits, tmp_path):
    assert main(["digits", "--seeds", "9,2-3", "--outdir", str(tmp_path), "--format", "npz", "-q"]) == 0
    with np.load(tmp_path / "images.npz", allow_pickle=False) as f:
        assert f["seeds"].tolist() == [9, 2, 3]
        np.testing.assert_array_equal(f["images"], digits.generate(seeds=[9, 2, 3]))
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "images.npz"]


def test_torchrun_two_ranks_write_the_same_files(digits, tmp_path):
    """Two gloo ranks share the batches (--batch-size 4: rank 0 takes batches 0 and 2, rank 1 batches 1
    and 3) and write exactly the files one process writes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "pdgan_infer.generate", "digits", "--seeds", "0-15", "--outdir", str(tmp_path / "ddp"), "--batch-size",
           "4", "--device", "cpu"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "wrote 16 images" in run.stderr and "with 2 processes" in run.stderr
    got = read_pngs(tmp_path / "ddp", range(16))
    np.testing.assert_array_equal(got, digits.generate(seeds=range(16), batch_size=4))
    assert main(["digits", "--seeds", "0-15", "--outdir", str(tmp_path / "one"), "-q", "--batch-size", "4"]) == 0
    np.testing.assert_array_equal(read_pngs(tmp_path / "one", range(16)), got)


def test_cli_conventions(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # a wrong command line: argparse, status 2
        main(["digits", "--seeds", "9-1", "--outdir", str(tmp_path)])
    assert e.value.code == 2 and "end is below" in capsys.readouterr().err
    # a failed run: status 1, the error and what is available instead, no traceback
    assert main(["no-such-model", "--outdir", str(tmp_path / "x"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pdgan-generate: error: no pretrained model, file or folder named 'no-such-model'")
    assert "'digits' (preset digits)" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_pdgan_errors_share_one_base_class():
    """`except PDGANError` catches every error pdgan raises on purpose; the builtin bases stay."""
    from pdgan_infer import CheckpointError, PDGANError
    from pdgan_infer.device import DeviceError
    from pdgan_infer.export.onnx import OnnxLoadError
    from pdgan_infer.generate import GenerateError
    from pdgan_infer.hub import HubError
    from pdgan_train._download import DownloadError, HashMismatchError
    from pdgan_train.edit import EditError
    from pdgan_train.eval import EvalError
    from pdgan_train.feature_nets import FeatureNetError

    for cls, builtin in ((CheckpointError, ValueError), (DeviceError, ValueError), (OnnxLoadError, ValueError),
                         (GenerateError, ValueError), (HubError, ValueError), (DownloadError, RuntimeError),
                         (HashMismatchError, RuntimeError), (EditError, ValueError), (EvalError, ValueError),
                         (FeatureNetError, RuntimeError)):
        assert issubclass(cls, PDGANError) and issubclass(cls, builtin), cls
    with pytest.raises(PDGANError, match="checkpoint not found"):
        Engine.from_pretrained("./no/such/folder")


def test_auto_device_means_the_gpu_when_there_is_one(monkeypatch, tmp_path):
    import torch

    from pdgan_infer.device import resolve_device
    from pdgan_train.cli import edit as edit_cli

    real_cuda = torch.cuda.is_available()
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cuda" if real_cuda else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda") and resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LOCAL_RANK", "1")  # under torchrun: this process's GPU
    assert resolve_device("auto") == torch.device("cuda", 1) and resolve_device("cuda:0") == torch.device("cuda", 0)
    monkeypatch.delenv("LOCAL_RANK")
    # pdgan-edit with its default --device auto loads the model onto the GPU
    seen = []

    def fake_load(path, device):
        seen.append(device)
        raise ValueError("stop here")

    monkeypatch.setattr(edit_cli, "load_checkpoint", fake_load)
    assert edit_cli.main(["digits", "vary", "--which", "z", "--out", str(tmp_path / "g.png"), "-q"]) == 1
    assert seen == [torch.device("cuda")]
