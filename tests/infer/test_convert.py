"""DDGAN's generators in pdgan (pdgan_infer.convert, pdgan-convert), against DDGAN's own outputs.

tests/fixtures/ddgan_small.pt was recorded by tools/ddgan_reference.py from DDGAN's code (NVlabs/denoising-
diffusion-gan): a shrunken NCSNpp with seeded random weights (saved with DDP's `module.` prefix, as DDGAN's
training script saves netG_EPOCH.pth), netG(x, t, z) at every DDGAN step t = 0..3, and `sample_from_model` from
a given x_T with its torch.randn / randn_like draws recorded. pdgan must reproduce both within 1e-5 (float32
rounding: measured ~2e-6). The CIFAR-10-size comparison needs the DDGAN checkout (DDGAN_CHECKOUT) and is slow.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import torch
from ddgan_fixture import PRESET, load_fixture, register, small_config  # tests/support

from pdgan_infer import Engine, Schedule
from pdgan_infer.checkpoint import CheckpointError, load_checkpoint
from pdgan_infer.cli import convert as convert_cli
from pdgan_infer.config import DDGAN_PRESETS, get_preset
from pdgan_infer.convert import (
    ConvertError,
    config_from_ddgan_args,
    convert_ddgan,
    ddgan_noise,
    ddgan_shapes,
    from_ddgan,
)
from pdgan_infer.sampler import sample

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-5


@pytest.fixture(scope="module")
def data() -> dict:
    return load_fixture()


@pytest.fixture(scope="module")
def model(data):
    return from_ddgan(data["state_dict"], small_config(data))


def test_fixture_was_recorded_as_ddgan_saves_and_varies_with_t(data):
    assert all(k.startswith("module.") for k in data["state_dict"])
    assert data["draw_calls"] == ["torch.randn", "torch.randn_like"] * 4
    out = data["generator_out"]
    assert out.std() > 0.2 and (out[1] - out[0]).abs().max() > 0.1  # every t gives another x0


def test_generator_matches_ddgan_at_every_t(data, model):
    T = model.schedule.T
    assert T == len(data["generator_out"]) == 4
    for i in range(T):  # DDGAN's step index i is pdgan's t = i + 1
        with torch.no_grad():
            out = model.generator(data["x"], data["z"], torch.full((len(data["x"]),), float(i + 1)))
        assert (out - data["generator_out"][i]).abs().max().item() <= TOL, f"DDGAN step {i}"


def test_sampler_matches_ddgan_chain_given_the_same_noise(data, model):
    noise, z_T = ddgan_noise(data["x_T"], data["draws"])
    with torch.no_grad():
        out = sample(model.generator, model.schedule, z_T, noise, latent_slot="none")
    assert (out - data["sample"]).abs().max().item() <= TOL
    assert (out - data["sample"]).abs().max().item() < 0.01 * (data["sample"] - data["x_T"]).abs().max().item()


def test_schedule_is_ddgans(data):
    """Schedule.ddgan(T) against DDGAN's Posterior_Coefficients (float32 there, float64 here)."""
    s, ref = Schedule.ddgan(4), data["posterior_coefficients"]
    for name in ("betas", "posterior_mean_coef1", "posterior_mean_coef2", "posterior_variance"):
        assert torch.allclose(getattr(s, name), ref[name].double(), rtol=1e-6, atol=1e-7), name


def test_presets_are_ddgans_readme_commands():
    """The README's test commands (tools/ddgan_reference.py holds them with test_ddgan.py's defaults) give the
    ddgan-* presets exactly: T 4 / 2 / 4, 128 ch 1 2 2 2 n_mlp 4, 64 ch 1 1 2 2 4 4 n_mlp 3."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import ddgan_reference as ref
    finally:
        sys.path.remove(str(ROOT / "tools"))
    for name, preset in DDGAN_PRESETS.items():
        assert config_from_ddgan_args({**ref.DDGAN_DEFAULTS, **ref.CONFIGS[name]}, preset) == get_preset(preset)
    assert [get_preset(p).schedule.T for p in DDGAN_PRESETS.values()] == [4, 2, 4]


def test_keys_with_or_without_the_ddp_prefix(data, model):
    bare = {k.removeprefix("module."): v for k, v in data["state_dict"].items()}
    again = from_ddgan(bare, small_config(data))
    for a, b in zip(again.generator.state_dict().values(), model.generator.state_dict().values()):
        assert torch.equal(a, b)
    assert model.latent_slot == "none" and model.components == ["generator"]


def _edited(data, edit):
    sd = dict(data["state_dict"])
    edit(sd)
    return sd


@pytest.mark.parametrize("edit, match", [
    (lambda sd: sd.pop("module.all_modules.3.Conv_0.weight"), "lacks 1 .*'all_modules.3.Conv_0.weight'"),
    (lambda sd: sd.update({"module.extra.weight": torch.zeros(1)}), "has 1 tensors .* 'extra.weight'"),
    (lambda sd: sd.update({"module.all_modules.2.weight": torch.zeros(16, 3, 5, 5)}),
     r"all_modules.2.weight has shape \[16, 3, 5, 5\], DDGAN's ddgan-small generator has \[16, 3, 3, 3\]"),
    (lambda sd: sd.update({"all_modules.2.weight": sd.pop("module.all_modules.2.weight")}), "mixes keys"),
    (lambda sd: sd.update({"module.all_modules.2.weight": [1.0]}), "all_modules.2.weight' is a list, not a tensor"),
])
def test_wrong_state_dicts_are_one_line_naming_the_key(data, edit, match):
    with pytest.raises(ConvertError, match=match) as e:
        from_ddgan(_edited(data, edit), small_config(data))
    assert "\n" not in str(e.value)


def test_another_configs_checkpoint_names_the_right_config():
    sd = {f"module.{k}": torch.empty(s, device="meta") for k, s in ddgan_shapes(get_preset("ddgan-cifar10")).items()}
    with pytest.raises(ConvertError, match="DDGAN's cifar10 generator, not celebahq256's: use --config cifar10"):
        from_ddgan(sd, "celebahq256")
    with pytest.raises(ConvertError, match="unknown DDGAN config 'cifar'"):
        from_ddgan(sd, "cifar")


class NotWeights:  # a pickled object: torch.load(weights_only=True) must refuse it
    pass


def test_files_that_are_not_state_dicts(tmp_path, data):
    torch.save({"netG_dict": {}, "epoch": 3}, tmp_path / "content.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    torch.save({"a": NotWeights()}, tmp_path / "pickle.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    cases = {"content.pth": "training state .* convert netG_EPOCH.pth", "list.pth": "not a state dict .* got list",
             "pickle.pth": "not a weights-only state dict", "text.pth": "not a weights-only state dict",
             "missing.pth": "not found"}
    for name, match in cases.items():
        with pytest.raises(ConvertError, match=match):
            from_ddgan(tmp_path / name, small_config(data))


def test_converted_folder_loads_and_says_where_it_came_from(tmp_path, monkeypatch, data):
    register(monkeypatch, data)
    torch.save(data["state_dict"], tmp_path / "netG_7.pth")
    folder = convert_ddgan(tmp_path / "netG_7.pth", small_config(data), tmp_path / "model")
    engine = Engine.from_pretrained(folder, backend="torch", device="cpu")
    assert engine.model.latent_slot == "none" and engine.model.components == ["generator"]
    assert engine.model.schedule.kind == "ddgan" and engine.model.schedule.T == 4
    images = engine.generate(seeds=[0, 1])
    assert images.shape == (2, 16, 16, 3) and images.std() > 10
    card = (folder / "README.md").read_text()
    assert "NVIDIA Source Code License" in card and "github.com/NVlabs/denoising-diffusion-gan" in card
    assert "netG_7.pth" in card and "engine.encode" not in card
    assert re.search(r'^license: "?other"?$', card, re.M) and re.search(r"^license_name: ", card, re.M)
    with pytest.raises(ValueError, match="no semantic encoder"):
        engine.encode(images)
    reloaded = load_checkpoint(folder)
    assert reloaded.checkpoint_meta["converted_from"]["config"] == PRESET


def test_a_model_without_encoder_needs_latent_slot_none(tmp_path, monkeypatch, data):
    from pdgan_infer import save_checkpoint
    register(monkeypatch, data)
    model = from_ddgan(data["state_dict"], small_config(data))
    model.latent_slot = "first"
    with pytest.raises(CheckpointError, match="without an encoder must have latent_slot 'none'"):
        save_checkpoint(model, tmp_path / "m")


def test_cli_converts_and_fails_in_one_line(tmp_path, monkeypatch, capsys, data):
    register(monkeypatch, data)
    monkeypatch.setitem(DDGAN_PRESETS, "small", PRESET)
    torch.save(data["state_dict"], tmp_path / "netG.pth")
    assert convert_cli.main(["ddgan", str(tmp_path / "netG.pth"), "--config", "small", "--out", str(tmp_path / "m"),
                             "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m")
    assert Engine.from_pretrained(tmp_path / "m", backend="torch").generate(seeds=[3]).shape == (1, 16, 16, 3)
    assert convert_cli.main(["ddgan", str(tmp_path / "netG.pth"), "--config", "cifar10", "--out",
                             str(tmp_path / "m2")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("pdgan-convert: error: ") and "use --config small" in err and "\n" not in err
    with pytest.raises(SystemExit) as e:
        convert_cli.main(["ddgan", str(tmp_path / "netG.pth"), "--out", str(tmp_path / "m3")])
    assert e.value.code == 2 and "--config" in capsys.readouterr().err
    assert convert_cli.main(["ddgan", str(tmp_path / "netG.pth"), "--config", "small", "--out",
                             str(tmp_path / "netG.pth")]) == 1
    assert "would destroy the input" in capsys.readouterr().err


DDGAN_CHECKOUT = os.environ.get("DDGAN_CHECKOUT")


@pytest.mark.slow
@pytest.mark.skipif(not DDGAN_CHECKOUT, reason="set DDGAN_CHECKOUT to a NVlabs/denoising-diffusion-gan checkout to "
                                              "record the CIFAR-10-size reference")
def test_cifar10_size_generator_and_chain_match_ddgan(tmp_path):
    """DDGAN's CIFAR-10 generator (48 M parameters, T = 4), recorded now from the checkout, through
    pdgan-convert's folder and Engine.from_pretrained."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import ddgan_reference as ref
    finally:
        sys.path.remove(str(ROOT / "tools"))
    data = ref.record(Path(DDGAN_CHECKOUT), "cifar10")
    torch.save(data["state_dict"], tmp_path / "netG_1200.pth")
    assert convert_cli.main(["ddgan", str(tmp_path / "netG_1200.pth"), "--config", "cifar10", "--out",
                             str(tmp_path / "m"), "-q"]) == 0
    model = Engine.from_pretrained(tmp_path / "m", backend="torch").model
    with torch.no_grad():
        for i in range(4):
            out = model.generator(data["x"], data["z"], torch.full((len(data["x"]),), float(i + 1)))
            assert (out - data["generator_out"][i]).abs().max().item() <= TOL
        noise, z_T = ddgan_noise(data["x_T"], data["draws"])
        assert (sample(model.generator, model.schedule, z_T, noise, "none") - data["sample"]).abs().max() <= TOL
