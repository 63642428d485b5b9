"""Checkpoint round trip and truncated files (every other way a file can be wrong: test_checkpoint_integrity.py)."""
from __future__ import annotations

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


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_first_tensor(tmp_path, value):
    """A checkpoint whose digest is right but whose weights hold NaN (any writer can compute the digest) would
    make all-black images: it is refused, naming the first damaged tensor in name order."""
    torch.manual_seed(0)
    m = PDGAN("digits")
    with torch.no_grad():
        m.generator.state_dict()[sorted(m.generator.state_dict())[-1]].view(-1)[0] = value
        m.latent.state_dict()[sorted(m.latent.state_dict())[0]].view(-1)[3] = value
    first = "generator." + sorted(m.generator.state_dict())[-1]  # "generator." sorts before "latent."
    one_line_error(save_checkpoint(m, tmp_path / "nan"), rf"tensor {first} holds NaN or infinite values")


# Wrong presets, shape mismatches, missing tensors, bad JSON and every other malformed header (in the
# weights' own metadata and in an older checkpoint's sidecar): tests/infer/test_checkpoint_integrity.py.
