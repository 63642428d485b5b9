"""Where z_T enters the chain (PDGAN.latent_slot, from `pdgan-train --encoder`): "first" (PDGAN), "all"
(Table 1 "+ encoder": z_T at every step), "none" (DDGAN baseline: z_T ~ N(0, I)). Checked against a
chain written out by hand here, through the sampler, the Engine, checkpoints and the trainer."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_models import tiny_cfg  # tests/support (the tiny fixture: tests/conftest.py)

from pdgan_infer import PDGAN, CheckpointError, Schedule, draw_noise, load_checkpoint, sample, save_checkpoint
from pdgan_infer.engine import Engine
from pdgan_infer.sampler import to_uint8

pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder(torch.nn.Module):
    """A stand-in generator: records the latent of every call and returns a fixed function of it."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[int, torch.Tensor]] = []

    def forward(self, x, z, t):
        self.seen.append((int(t[0]), z.clone()))
        return torch.tanh(x * 0.5 + z[:, :1, None, None])


@pytest.mark.parametrize("slot", ["first", "all", "none"])
def test_sampler_feeds_z_per_slot(slot):
    sched = Schedule.pdgan(T=3)
    noise = draw_noise([5, 6], 3, 3, 4, 8)
    z_T = torch.randn(2, 8)
    g = Recorder()
    sample(g, sched, z_T, noise, slot)
    assert [t for t, _ in g.seen] == [3, 2, 1]
    assert torch.equal(g.seen[0][1], z_T)
    for t, z in g.seen[1:]:  # t < T: the drawn z_t, except "all" which repeats z_T
        assert torch.equal(z, z_T if slot == "all" else noise.z[t - 1])


def _chain_by_hand(model: PDGAN, z_T: torch.Tensor, noise, every_step: bool) -> torch.Tensor:
    """x0 by the closed-form posterior mean/variance of q(x_{t-1} | x_t, x0) (DDPM Eq. 7), written here."""
    sched, x = model.schedule, noise.x_T
    for t in range(sched.T, 0, -1):
        z = z_T if (t == sched.T or every_step) else noise.z[t - 1]
        x0 = model.generator(x, z, torch.full((len(x),), float(t)))
        if t == 1:
            return x0
        # the schedule's tables start at t = 1: index t - 1 is step t
        beta, a_bar, a_bar_prev = float(sched.betas[t - 1]), float(sched.alphas_cumprod[t - 1]), \
            float(sched.alphas_cumprod[t - 2])
        mean = (a_bar_prev ** 0.5 * beta / (1 - a_bar)) * x0 + ((1 - beta) ** 0.5 * (1 - a_bar_prev) / (1 - a_bar)) * x
        var = beta * (1 - a_bar_prev) / (1 - a_bar)
        x = mean + var ** 0.5 * noise.eps[t - 2]
    return x


@pytest.fixture(scope="module")
def digits_model():
    torch.manual_seed(3)
    model = PDGAN("digits", with_latent=False).eval()
    for p in model.generator.parameters():  # training zero-inits some layers: give them weight
        p.data.add_(0.02 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("slot", ["all", "none"])
def test_engine_samples_ablation_models_like_the_hand_chain(digits_model, slot):
    digits_model.latent_slot = slot
    try:
        engine = Engine(digits_model, backend="torch", verbose=False)
        noise = draw_noise([7 * 2**16, 7 * 2**16 + 1], 2, 3, 32, 32)
        z_T = noise.z_T_noise if slot == "none" else torch.randn(2, 32)
        with torch.no_grad():
            want = to_uint8(_chain_by_hand(digits_model, z_T, noise, every_step=slot == "all")).numpy()
        got = engine.generate(2, seed=7) if slot == "none" else engine.generate(2, seed=7, z_T=z_T)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
        if slot == "none":  # the baseline's z_T is the standard-normal draw itself: no latent denoiser needed
            assert torch.equal(engine.sample_latents(2, seed=7), noise.z_T_noise)
    finally:
        digits_model.latent_slot = "first"


def test_first_slot_without_latent_still_refuses(digits_model):
    engine = Engine(digits_model, backend="torch", verbose=False)
    with pytest.raises(ValueError, match="no latent denoiser"):
        engine.generate(1, seed=0)


def test_checkpoint_records_slot_and_reads_old_headers(digits_model, tmp_path):
    digits_model.latent_slot = "all"
    try:
        path = save_checkpoint(digits_model, tmp_path / "m")
    finally:
        digits_model.latent_slot = "first"
    assert load_checkpoint(path).latent_slot == "all"
    header_file = tmp_path / "m.json"
    header = json.loads(header_file.read_text())
    _without_digest(path, header)  # a checkpoint written before the digest: its sidecar is the header
    del header["latent_slot"]  # a checkpoint written before the field: the run's --encoder decides
    header["meta"] = {"train_config": {"encoder": "none"}}
    header_file.write_text(json.dumps(header))
    assert load_checkpoint(path).latent_slot == "none"
    header["meta"] = {}
    header_file.write_text(json.dumps(header))
    assert load_checkpoint(path).latent_slot == "first"
    header["latent_slot"] = "sometimes"
    header_file.write_text(json.dumps(header))
    with pytest.raises(CheckpointError, match="latent_slot 'sometimes'"):
        load_checkpoint(path)


def _without_digest(path, header) -> None:
    """Rewrite checkpoint `path` as pdgan wrote it before the weights carried their content digest."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    with safe_open(str(path), "pt") as f:
        embedded = f.metadata()["pdgan"]
    save_file(load_file(str(path)), str(path), metadata={"format": "pt", "pdgan": embedded})
    header.pop("sha256")
    header.pop("content_sha256")


def test_baseline_training_skips_the_latent_stage(tiny, tmp_path):  # noqa: F811
    from pdgan_train.loop import Trainer
    Trainer(tiny_cfg(tmp_path, encoder="none", pixel_loss=False, perceptual_chain=False, progressive=False,
                     max_steps=2, latent_steps=20)).train()
    m = load_checkpoint(tmp_path / "model.safetensors")
    assert m.latent_slot == "none" and m.latent is None
    assert (tmp_path / "samples" / "final.png").exists()
    assert '"latent_loss"' not in (tmp_path / "metrics.jsonl").read_text()
    assert Engine(m, backend="torch", verbose=False).generate(2, seed=0).shape == (2, 32, 32, 3)
