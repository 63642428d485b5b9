"""Checkpoint round trip and one-line errors for every way a file can be wrong."""
from __future__ import annotations

import json

import pytest
import torch

from pdgan_infer import PDGAN, CheckpointError, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    m = PDGAN("digits")
    return m, save_checkpoint(m, tmp_path_factory.mktemp("ck") / "model")


def one_line_error(path, match, **kw):
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(path, **kw)
    assert "\n" not in str(e.value)


def test_round_trip_bit_for_bit(saved):
    m, path = saved
    assert path.name == "model.safetensors" and path.with_suffix(".json").exists()
    m2 = load_checkpoint(path)
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert m2.config == m.config and m2.components == ["generator", "encoder", "latent"]
    load_checkpoint(path.parent)  # a run directory works too


def test_without_latent(tmp_path):
    m = PDGAN("digits", with_latent=False)
    assert load_checkpoint(save_checkpoint(m, tmp_path / "g")).latent is None


def test_truncated(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    bad.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    one_line_error(bad, "truncated or corrupt")
    bad.with_suffix(".json").unlink()  # no JSON: the embedded header path
    one_line_error(bad, "truncated or corrupt")


def test_wrong_and_unknown_preset(saved, tmp_path):
    _, path = saved
    one_line_error(path, "is for preset 'digits', not 'cifar10'", preset="cifar10")
    header = json.loads(path.with_suffix(".json").read_text())
    header["config"]["preset"] = "imagenet"
    (tmp_path / "model.safetensors").write_bytes(path.read_bytes())
    (tmp_path / "model.json").write_text(json.dumps(header))
    one_line_error(tmp_path / "model.safetensors", "unknown preset 'imagenet'")


def test_shape_mismatch(saved, tmp_path):
    _, path = saved
    header = json.loads(path.with_suffix(".json").read_text())
    header["config"]["generator"]["nf"] = 16
    (tmp_path / "model.safetensors").write_bytes(path.read_bytes())
    (tmp_path / "model.json").write_text(json.dumps(header))
    one_line_error(tmp_path / "model.safetensors", "shape mismatch for generator.")


def test_missing_keys_and_files(saved, tmp_path):
    _, path = saved
    one_line_error(tmp_path / "nothing.safetensors", "checkpoint not found")
    from safetensors.torch import load_file, save_file
    t = load_file(str(path))
    t.pop("generator.conv_in.weight")
    save_file(t, str(tmp_path / "model.safetensors"))
    header = json.loads(path.with_suffix(".json").read_text())
    header.pop("sha256")
    (tmp_path / "model.json").write_text(json.dumps(header))
    one_line_error(tmp_path / "model.safetensors", "lacks 1 tensors")
    (tmp_path / "model.json").write_text("{not json")
    one_line_error(tmp_path / "model.safetensors", "not valid JSON")
