"""pdgan-generate: one PNG per seed (EDM's convention), decoded with Pillow and compared with
`Engine.generate(seeds=...)`; seed lists, resuming, the folder manifest (refused resumes, --overwrite),
--subdirs, npz (with ADM's arr_0), torchrun with two gloo ranks, CLI conventions."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pdgan_infer import PDGAN, __version__, save_checkpoint
from pdgan_infer.cli.generate import main
from pdgan_infer.engine import Engine
from pdgan_infer.files import MANIFEST as FILES_MANIFEST
from pdgan_infer.generate import MANIFEST
from pdgan_infer.seeds import parse_seeds

WRITTEN = (MANIFEST, FILES_MANIFEST)  # pdgan-generate's manifest and the files layer's record of its writes

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
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(f"{s:06d}.png" for s in range(16)), *WRITTEN])
    np.testing.assert_array_equal(read_pngs(tmp_path, range(16)), digits.generate(seeds=range(16)))


def test_seed_lists_and_resume(digits, tmp_path):
    spec, seeds = "3-5,40,7", [3, 4, 5, 40, 7]
    assert main(["digits", "--seeds", spec, "--outdir", str(tmp_path), "-q", "--batch-size", "2"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(f"{s:06d}.png" for s in seeds), *WRITTEN])
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
        assert sorted(f.files) == ["arr_0", "images", "seeds"] and f["seeds"].tolist() == [9, 2, 3]
        np.testing.assert_array_equal(f["images"], digits.generate(seeds=[9, 2, 3]))
        np.testing.assert_array_equal(f["arr_0"], f["images"])  # the ADM / DiT evaluator's key
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["images.npz", *WRITTEN])


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    """A second digits-sized model (random weights): not the bundled one."""
    import torch

    torch.manual_seed(1)
    model = PDGAN("digits")
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("other") / "other"
    save_checkpoint(model, path)
    return path.with_suffix(".safetensors")


def state_sha256(engine: Engine) -> str:
    """sha256 over name, dtype, shape and bytes of every tensor of the state dict, in name order."""
    h = hashlib.sha256()
    for name, value in sorted(engine.model.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)};".encode() + t.numpy().tobytes())
    return h.hexdigest()


def test_manifest_records_what_wrote_the_folder(digits, tmp_path):
    assert main(["digits", "--seeds", "0-1", "--outdir", str(tmp_path), "-q", "--backend", "torch"]) == 0
    m = json.loads((tmp_path / MANIFEST).read_text())
    assert m["weights_sha256"] == state_sha256(digits)
    assert m["config"] == json.loads(json.dumps(digits.config.to_dict()))
    assert (m["backend"], m["dtype"], m["version"], m["model"], m["subdirs"]) == ("torch", "float32", __version__,
                                                                                 "digits", False)
    assert "seed" in m["seed_rule"] and m["image_shape"] == [32, 32, 3]


def test_resume_refuses_another_model_backend_or_layout(digits, other_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["digits", "--seeds", "0-3", "--outdir", str(out), "-q", "--backend", "torch"]) == 0
    before = read_pngs(out, range(4))
    for extra, names in (([str(other_model)], ("model (weights sha256)", state_sha256(digits)[:12])),
                         (["digits", "--backend", "native"], ("backend", "'torch' there, 'native' now")),
                         (["digits", "--backend", "torch", "--subdirs"], ("layout (--subdirs)", "False there"))):
        assert main([*extra, "--seeds", "0-5", "--outdir", str(out), "-q"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--overwrite" in err and all(n in err for n in names), err
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{s:06d}.png" for s in range(4)), *WRITTEN])
    np.testing.assert_array_equal(read_pngs(out, range(4)), before)  # nothing was touched
    # --overwrite replaces: seeds 0-1 of the other model only, the first model's 2 and 3 are gone
    (out / "notes.txt").write_text("mine")
    assert main([str(other_model), "--seeds", "0-1", "--outdir", str(out), "-q", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["000000.png", "000001.png", "notes.txt", *WRITTEN])
    other = Engine.from_pretrained(other_model, device="cpu")
    np.testing.assert_array_equal(read_pngs(out, range(2)), other.generate(seeds=range(2)))
    assert json.loads((out / MANIFEST).read_text())["weights_sha256"] == state_sha256(other)
    assert main([str(other_model), "--seeds", "0-2", "--outdir", str(out), "-q"]) == 0  # now it resumes


def test_folder_of_foreign_images_is_refused(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "cat.png")
    assert main(["digits", "--seeds", "0", "--outdir", str(tmp_path), "-q"]) == 1
    err = capsys.readouterr().err
    assert "1 image file(s) (e.g. cat.png) but no pdgan-generate.json" in err and "--overwrite" in err
    assert main(["digits", "--seeds", "0", "--outdir", str(tmp_path), "-q", "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["000000.png", "cat.png", *WRITTEN])  # not its file


def test_subdirs_as_edm(digits, tmp_path):
    seeds = [5, 999, 1000, 2047]
    assert main(["digits", "--seeds", "5,999-1000,2047", "--outdir", str(tmp_path), "-q", "--subdirs"]) == 0
    got = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert got == ["000000/000005.png", "000000/000999.png", "001000/001000.png", "002000/002047.png"]
    want = digits.generate(seeds=seeds)
    for (name, img) in zip(got, want):
        with Image.open(tmp_path / name) as im:
            np.testing.assert_array_equal(np.asarray(im), img)


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


def test_batch_is_edms_name_for_batch_size():
    """EDM's generate.py spells it --batch; both names set the same option, and the prefix --batch-s still works."""
    from pdgan_infer.cli.generate import build_parser

    parser = build_parser()
    for flag in ("--batch", "--batch-size", "--batch-s"):
        assert parser.parse_args(["digits", "--outdir", "o", flag, "8"]).batch_size == 8
    assert parser.parse_args(["digits", "--outdir", "o"]).batch_size is None
