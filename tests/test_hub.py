"""Bundled pretrained models: `Engine.from_pretrained`, its listing, `pdgan_train.bundle`, and the model
the package ships (it must draw recognisable digits of every class, judged by the shipped classifier)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pdgan_infer import PDGAN, CheckpointError, hub, save_checkpoint
from pdgan_infer.engine import Engine
from pdgan_train.bundle import bundle
from pdgan_train.bundle import main as bundle_main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def run_checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(PDGAN("digits"), tmp_path / "run" / "model", meta={"step": 7})


def test_bundle_then_from_pretrained(run_checkpoint, tmp_path, monkeypatch):
    dest = tmp_path / "pretrained"
    path = bundle(run_checkpoint, "mine", "a test model", command="pdgan-train --preset digits",
                  metrics={"digits_fid": 1.5, "class_coverage": 1.0, "not_a_metric": 3}, dest=dest)
    assert path == dest / "mine.safetensors" and (dest / "mine.json").exists()
    monkeypatch.setattr(hub, "PRETRAINED_DIR", dest)
    listing = Engine.pretrained()
    assert list(listing) == ["mine"]
    info = listing["mine"]
    assert info["preset"] == "digits" and info["description"] == "a test model"
    assert info["metrics"] == {"digits_fid": 1.5, "class_coverage": 1.0}  # unknown keys are not recorded
    assert info["command"] == "pdgan-train --preset digits"
    a = Engine.from_pretrained("mine", backend="torch", verbose=False).generate(2, seed=3)
    b = Engine.from_checkpoint(run_checkpoint, backend="torch", verbose=False).generate(2, seed=3)
    assert np.array_equal(a, b)  # the bundled copy holds the same weights


def test_from_pretrained_without_a_name_lists_and_explains(run_checkpoint, tmp_path, monkeypatch):
    dest = tmp_path / "pretrained"
    bundle(run_checkpoint, "mine", "a test model", dest=dest)
    monkeypatch.setattr(hub, "PRETRAINED_DIR", dest)
    for call in (Engine.from_pretrained, lambda: Engine.from_pretrained("cifar10-imaginary")):
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert "'mine' (preset digits): a test model" in msg and "Engine.from_checkpoint(" in msg
    monkeypatch.setattr(hub, "PRETRAINED_DIR", tmp_path / "empty")
    with pytest.raises(ValueError, match="no pretrained model is bundled"):
        Engine.from_pretrained("digits")


def test_damaged_bundle_is_named(run_checkpoint, tmp_path, monkeypatch):
    dest = tmp_path / "pretrained"
    bundle(run_checkpoint, "mine", "x", dest=dest)
    (dest / "mine.json").write_text("{not json")
    monkeypatch.setattr(hub, "PRETRAINED_DIR", dest)
    assert "unreadable" in Engine.pretrained()["mine"]["description"]
    with pytest.raises(CheckpointError, match="damaged"):
        Engine.from_pretrained("mine")


def test_bundle_cli_errors(run_checkpoint, tmp_path, capsys):
    assert bundle_main([str(tmp_path / "missing.safetensors"), "--name", "x", "--dest", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert bundle_main([str(run_checkpoint), "--name", "bad name", "--dest", str(tmp_path)]) == 2
    assert "plain identifier" in capsys.readouterr().err
    nolatent = save_checkpoint(PDGAN("digits", with_latent=False), tmp_path / "nolat")
    assert bundle_main([str(nolatent), "--name", "x", "--dest", str(tmp_path)]) == 2
    assert "no latent denoiser" in capsys.readouterr().err


def test_the_shipped_digits_model_draws_every_digit():
    """The package ships `digits`: 1000 samples, judged by the shipped digits classifier (100% held-out
    accuracy), must cover all ten classes with confident predictions."""
    from pdgan_train.digits_classifier import load_digits_classifier

    models = hub.pretrained_models()
    assert "digits" in models, "the package must ship pdgan_infer/pretrained/digits.safetensors"
    info = models["digits"]
    assert info["preset"] == "digits" and info["command"].startswith("pdgan-train")
    engine = Engine.from_pretrained("digits", backend="torch", verbose=False)
    assert engine.model.latent is not None and engine.model.latent_slot == "first"
    images = engine.generate(1000, seed=0)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    clf = load_digits_classifier()
    with torch.no_grad():
        probs = torch.softmax(clf(x), dim=1)
    conf, label = probs.max(1)
    counts = np.bincount(label[conf > 0.5].numpy(), minlength=10)
    assert (counts > 0).all(), f"classes drawn (confident): {counts.tolist()}"
    assert float((conf > 0.5).float().mean()) > 0.6
