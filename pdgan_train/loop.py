"""The PDGAN training loop: DDGAN's alternating D / G updates with the paper's objective, progressive
step sampling, EMA, lazy R1, resumable runs, and the latent-denoiser stage.

One process by default; under `torchrun --nproc_per_node=K -m pdgan_train ...` the generator,
encoder and discriminator are wrapped in DistributedDataParallel (NCCL on GPU, gloo on CPU), data
is split by a DistributedSampler, and only rank 0 logs and writes files.

Run directory: `config.json` (resolved config), `train_state.pt` (everything `--resume` needs,
written atomically, loaded with `weights_only=True`), `model.safetensors` + `model.json` (the EMA
inference checkpoint `pdgan_infer` loads), `metrics.jsonl`, `samples/step_XXXXXXX.png`.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from pdgan_infer import PDGAN, save_checkpoint
from pdgan_infer.checkpoint import atomic_write_bytes
from pdgan_infer.config import get_preset

from . import losses as L
from .adversarial import d_loss_fake, d_loss_real, g_loss_adv, r1_penalty, r1_weight
from .config import TrainConfig
from .data import build_dataset, random_hflip, random_translate
from .discriminator import build_discriminator
from .latent import train_latent

STATE_FILE = "train_state.pt"


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to do."""


def _unwrap(m: torch.nn.Module) -> torch.nn.Module:
    return m.module if isinstance(m, DDP) else m


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: str | None = None, device: str | None = None):
        cfg.validate()
        self.cfg = cfg
        self.rank, self.world = _init_distributed()
        self.device = torch.device(device or (f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
                                              if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.out = Path(cfg.out)
        self.main = self.rank == 0
        if self.main:
            _check_writable(self.out)
        self.model_cfg = get_preset(cfg.preset)
        # Inputs first, so that bad data or missing weights fail before any model is built.
        self.dataset = build_dataset(cfg.data, self.model_cfg.resolution, self.model_cfg.channels,
                                     allow_upscale=cfg.allow_upscale)
        if len(self.dataset) < cfg.batch_size * self.world:
            raise TrainingError(f"dataset {cfg.data!r} has {len(self.dataset)} images, fewer than one batch "
                                f"({cfg.batch_size} x {self.world} processes); lower --batch-size")
        self.features = self._load_features()
        torch.manual_seed(cfg.seed + self.rank)
        self.model = PDGAN(self.model_cfg).to(self.device)  # generator, encoder (trained), latent
        self.G, self.E, self.schedule = self.model.generator, self.model.encoder, self.model.schedule
        self.D = build_discriminator(self.model_cfg.resolution, self.model_cfg.channels, cfg.d_ngf).to(self.device)
        self.ema = PDGAN(self.model_cfg).to(self.device).eval()
        self.model.latent_slot = self.ema.latent_slot = self.cfg.encoder  # how sampling feeds z_T (checkpoint)
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)
        # fused Adam: the same update in one kernel per optimizer (benchmarks/bench_train_step.py)
        adam = dict(betas=(cfg.beta1, cfg.beta2), fused=self.device.type in ("cpu", "cuda"))
        self.opt_g = torch.optim.Adam(list(self.G.parameters()) + list(self.E.parameters()), lr=cfg.lr_g, **adam)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, **adam)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        self.gen = torch.Generator(self.device).manual_seed(cfg.seed * 1000 + self.rank)  # training noise
        self.data_gen = torch.Generator().manual_seed(cfg.seed * 1000 + 500 + self.rank)  # flips
        self.step, self.epoch, self.batch_pos, self.phase = 0, 0, 0, "gan"
        self.sampler = DistributedSampler(self.dataset, num_replicas=self.world, rank=self.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
        if resume is not None:
            self.load_state(resume)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G, self.E, self.D = (DDP(m, device_ids=ids) for m in (self.G, self.E, self.D))

    # --- setup helpers ---------------------------------------------------------------------------
    def _load_features(self):
        if not self.cfg.feature_loss:
            return None
        from .vgg import load_vgg16
        try:
            return load_vgg16(self.cfg.vgg_weights).to(self.device)
        except (RuntimeError, FileNotFoundError, ValueError) as e:
            raise TrainingError(f"{e}\n(the VGG16 feature loss of Eq. 9 needs ImageNet VGG16 weights: pass "
                                "--vgg-weights FILE, or train without it: --no-feature-loss)") from None

    def _autocast(self):
        if self.cfg.amp == "none":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16)

    def _batches(self):
        """Yields (images, labels) forever, resumable at (epoch, batch_pos)."""
        b = self.cfg.batch_size
        while True:
            self.sampler.set_epoch(self.epoch)
            idx = list(self.sampler)
            chunks = [idx[i:i + b] for i in range(0, len(idx) - b + 1, b)]
            loader = DataLoader(self.dataset, batch_sampler=chunks[self.batch_pos:], num_workers=self.cfg.num_workers)
            for x, y in loader:
                self.batch_pos += 1
                yield x, y
            self.epoch, self.batch_pos = self.epoch + 1, 0

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen, device=self.device)

    def _disc(self, D: torch.nn.Module, x_prev: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """D(x_{t-1}, x_t, t), with DiffAugment's translation of both inputs when augment="translate"
        (the same for real and fake pairs, so it cannot leak into the samples)."""
        shift = round(self.cfg.translate * self.model_cfg.resolution)
        if self.cfg.augment == "translate" and shift > 0:
            x_prev, x_t = random_translate(x_prev, x_t, max_shift=shift, generator=self.gen)
        return D(x_prev, x_t, t)

    # --- one optimisation step ---------------------------------------------------------------
    def _latents(self, x0: torch.Tensor, t: torch.Tensor, encoder: torch.nn.Module):
        nz = self.model_cfg.generator.nz
        mask = L.semantic_mask(t, self.schedule.T, self.cfg.encoder)
        # Always run the encoder when it is in use: under DDP every rank must take part in its
        # gradient all-reduce, even when its own batch drew no t = T sample.
        z_sem = encoder(x0) if self.cfg.encoder != "none" else None
        return L.latent_input(mask, z_sem, self._randn(x0.shape[0], nz)), mask, z_sem

    def d_step(self, x0: torch.Tensor) -> dict[str, float]:
        cfg, T = self.cfg, self.schedule.T
        t = L.sample_t(x0.shape[0], T, self._p(), self.gen, self.device)
        x_prev, x_t = self.schedule.q_sample_pairs(x0, t, self.gen)
        w_r1 = r1_weight(self.step, cfg.r1_gamma, cfg.lazy_reg)
        x_prev.requires_grad_(w_r1 > 0)
        self.D.requires_grad_(True)
        with self._autocast():
            real = self._disc(self.D, x_prev, x_t, t)
            loss = d_loss_real(real)
            r1 = r1_penalty(real.float(), x_prev) if w_r1 > 0 else torch.zeros((), device=self.device)
            with torch.no_grad():
                z, _, _ = self._latents(x0, t, _unwrap(self.E))
                fake_x0 = _unwrap(self.G)(x_t, z, t.float())
                fake = self.schedule.step(fake_x0.float(), x_t, t, self._randn(*x0.shape))
            loss_fake = d_loss_fake(self._disc(self.D, fake, x_t, t))
        total = loss + loss_fake + w_r1 * r1
        _check_finite(step=self.step, d_real=loss, d_fake=loss_fake, r1=r1)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.opt_d)
        return {"d_real": loss.item(), "d_fake": loss_fake.item(), "r1": r1.item()}

    def g_step(self, x0: torch.Tensor) -> dict[str, float]:
        cfg, T = self.cfg, self.schedule.T
        t = L.sample_t(x0.shape[0], T, self._p(), self.gen, self.device)
        _, x_t = self.schedule.q_sample_pairs(x0, t, self.gen)
        D = _unwrap(self.D).requires_grad_(False)
        logs: dict[str, Any] = {"p": self._p() if cfg.progressive else float("nan"),
                                "frac_T": (t == T).float().mean().item()}
        with self._autocast():
            z, mask, z_sem = self._latents(x0, t, self.E)
            pred = self.G(x_t, z, t.float())
            fake = self.schedule.step(pred.float(), x_t, t, self._randn(*x0.shape))
            adv = g_loss_adv(self._disc(D, fake, x_t, t))
            total = cfg.w_adv * adv
            if cfg.pixel_loss:
                logs["pixel"] = pix = L.masked_l1(pred.float(), x0, mask)
                total = total + cfg.w_pixel * pix
            if cfg.feature_loss:
                logs["feature"] = feat = L.feature_l1(self.features, pred.float(), x0, mask)
                total = total + cfg.w_feature * feat
            if cfg.perceptual_chain and T > 1:
                per_mask = t < T
                z_T = z_sem.detach() if z_sem is not None else self._randn(x0.shape[0], self.model_cfg.generator.nz)
                targets = L.chain_targets(_unwrap(self.G), self.schedule, x0, t, z_T,
                                          self._randn(T - 1, x0.shape[0], self.model_cfg.generator.nz),
                                          self._randn(*x0.shape), self._randn(T - 1, *x0.shape))
                logs["per"] = per = L.masked_l1(pred.float(), targets, per_mask)
                total = total + cfg.w_per * per
        logs["g_adv"] = adv
        _check_finite(step=self.step, **{k: v for k, v in logs.items() if torch.is_tensor(v)})
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        return {k: (v.item() if torch.is_tensor(v) else v) for k, v in logs.items()}

    def _p(self) -> float | None:
        if not self.cfg.progressive:
            return None
        return L.progressive_p(self.step, self.cfg.max_steps, self.cfg.p_max, self.cfg.p_min)

    def _set_lr(self) -> None:
        for opt, lr0 in ((self.opt_g, self.cfg.lr_g), (self.opt_d, self.cfg.lr_d)):
            lr = lr0
            if self.cfg.cosine:
                cos = math.cos(math.pi * self.step / self.cfg.max_steps)
                lr = self.cfg.lr_min + (lr0 - self.cfg.lr_min) * 0.5 * (1 + cos)
            for group in opt.param_groups:
                group["lr"] = lr

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        for name in ("generator", "encoder"):
            src, dst = getattr(self.model, name), getattr(self.ema, name)
            torch._foreach_lerp_(list(dst.parameters()), list(src.parameters()), 1.0 - decay)
            for b_ema, b in zip(dst.buffers(), src.buffers()):
                b_ema.copy_(b)

    # --- the run -------------------------------------------------------------------------------
    def train(self, until: int | None = None) -> Path:
        """Train to max_steps (then the latent stage), or stop early after step `until` with the
        state saved (as if interrupted; `--resume` continues exactly)."""
        cfg = self.cfg
        stop = cfg.max_steps if until is None else min(until, cfg.max_steps)
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.out / "config.json", json.dumps(
                {"train": cfg.to_dict(), "model": self.model_cfg.to_dict()}, indent=2).encode())
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not self.main or None, desc="pdgan-train",
                   dynamic_ncols=True)
        batches, t_last, n_last = self._batches(), time.perf_counter(), self.step
        try:
            while self.phase == "gan" and self.step < stop:
                x0, _ = next(batches)
                if cfg.augment == "hflip":
                    x0 = random_hflip(x0, self.data_gen)
                x0 = x0.to(self.device, non_blocking=True)
                if cfg.channels_last:
                    x0 = x0.contiguous(memory_format=torch.channels_last)
                self._set_lr()
                logs = self.d_step(x0)
                logs.update(self.g_step(x0))
                self._update_ema()
                self.step += 1
                if self.main and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                    now = time.perf_counter()
                    ips = (self.step - n_last) * cfg.batch_size * self.world / max(now - t_last, 1e-9)
                    t_last, n_last = now, self.step
                    self._log({"step": self.step, "images_per_s": ips, **logs})
                    keys = ("d_real", "d_fake", "g_adv", "pixel", "per")
                    shown = {k: f"{v:.3f}" for k, v in logs.items() if k in keys}
                    bar.set_postfix(shown | {"img/s": f"{ips:.0f}"})
                    if bar.disable:  # no terminal (nohup, CI): a plain line instead of the bar
                        print(f"step {self.step}/{cfg.max_steps} " + " ".join(f"{k}={v}" for k, v in shown.items())
                              + f" img/s={ips:.0f}", file=sys.stderr, flush=True)
                bar.update(1)
                if self.step % cfg.sample_every == 0 or self.step == cfg.max_steps:
                    self.sample_grid()
                if cfg.digits_eval and (self.step % cfg.eval_every == 0 or self.step == cfg.max_steps):
                    self.evaluate()
                if self.step % cfg.ckpt_every == 0 and self.step < cfg.max_steps:
                    self.save()
        except KeyboardInterrupt:
            bar.close()
            self.save()
            if self.main:
                print(f"\ninterrupted at step {self.step}; state saved: resume with --resume {self.out}",
                      file=sys.stderr)
            raise
        bar.close()
        if self.phase == "gan" and self.step < cfg.max_steps:
            self.save()
            return self.out / "model.safetensors"
        if self.phase == "gan":  # no semantic code (DDGAN baseline): z_T ~ N(0, I), nothing to learn
            self.phase = "latent" if cfg.latent_stage else "done"
            self.save()
            if self.phase == "done" and self.main:
                self.sample_grid(final=True)
        if self.phase == "latent":
            if self.main:
                train_latent(self, cfg)
            self.phase = "done"
            self.save()
            if self.main:
                self.sample_grid(final=True)
                if cfg.digits_eval:
                    self.evaluate(final=True)
        return self.out / "model.safetensors"

    def evaluate(self, final: bool = False) -> dict[str, Any] | None:
        """The digits metrics of the EMA model (`pdgan_train.digits_metrics`), logged to metrics.jsonl as
        {"step", "eval": {...}} and drawn in metrics.png. During the GAN stage z_T is drawn from a
        Gaussian fitted to the codes (no latent denoiser yet); `final` uses the latent denoiser."""
        if not self.main:
            return None
        from .digits_metrics import evaluate_model
        from .plots import plot_run

        z_T = "latent" if final and self.ema.can_draw_z_T else "gaussian"
        result = evaluate_model(self.ema, n=self.cfg.eval_n, z_T=z_T, device=self.device)
        self._log({"step": self.step, "eval": result})
        plot_run(self.out)
        return result

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    @torch.no_grad()
    def sample_grid(self, final: bool = False) -> Path | None:
        """Row 1: real images; row 2: their 2-step reconstructions z_T = SE(x0) (EMA); rows 3-4:
        samples with z_T from the latent denoiser (final) or a Gaussian fitted to SE codes."""
        if not self.main:
            return None
        from pdgan_infer.images import save_grid
        from pdgan_infer.sampler import draw_noise, sample, to_uint8
        n, res, ch, nz = 8, self.model_cfg.resolution, self.model_cfg.channels, self.model_cfg.generator.nz
        reals = torch.stack([self.dataset[i][0] for i in range(min(len(self.dataset), 64))]).to(self.device)
        noise = draw_noise(list(range(3 * n)), self.schedule.T, ch, res, nz).to(self.device)
        slot = self.ema.latent_slot
        codes = self.ema.encoder(reals) if slot != "none" else noise.latent[:n]  # baseline: no reconstructions
        recon = sample(self.ema.generator, self.schedule, codes[:n], _slice(noise, 0, n), slot)
        if slot == "none" or (final and self.ema.latent is not None):
            z_T = self.ema.draw_z_T(noise.latent[n:])
        else:
            z_T = codes.mean(0) + codes.std(0) * noise.latent[n:]
        gen = sample(self.ema.generator, self.schedule, z_T, _slice(noise, n, 3 * n), slot)
        grid = to_uint8(torch.cat([reals[:n], recon, gen]).cpu()).numpy()
        path = self.out / "samples" / (f"step_{self.step:07d}.png" if not final else "final.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_grid(grid, path, nrow=n)
        return path

    # --- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": "pdgan-train-state", "config": self.cfg.to_json(), "step": self.step, "epoch": self.epoch,
            "batch_pos": self.batch_pos, "phase": self.phase, "world": self.world,
            "model": self.model.state_dict(), "ema": self.ema.state_dict(), "D": _unwrap(self.D).state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": {"gen": self.gen.get_state(), "data": self.data_gen.get_state(), "torch": torch.get_rng_state()},
        }

    def save(self) -> None:
        """Atomic: the resume state, then the EMA inference checkpoint (rank 0 only)."""
        if self.world > 1:
            dist.barrier()
        if not self.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / f".{STATE_FILE}.tmp"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, self.out / STATE_FILE)
        latent = self.ema.latent
        trained = self.phase == "done" and self.cfg.latent_stage
        if not trained:  # an untrained latent denoiser is left out of the inference checkpoint
            self.ema.latent = None
        try:
            save_checkpoint(self.ema, self.out / "model",
                            meta={"step": self.step, "phase": self.phase, "train_config": self.cfg.to_dict()})
        finally:
            self.ema.latent = latent

    def load_state(self, run_dir: str) -> None:
        path = Path(run_dir) / STATE_FILE if Path(run_dir).is_dir() else Path(run_dir)
        if not path.exists():
            raise TrainingError(f"cannot resume: {path} not found (expected a run directory written by pdgan-train)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 (truncated zip, wrong format, unsafe content: all reported)
            raise TrainingError(f"cannot resume: {path} is corrupt or not a pdgan training state "
                                f"({str(e).splitlines()[0][:160]}); the file was left untouched") from None
        if not isinstance(state, dict) or state.get("format") != "pdgan-train-state":
            raise TrainingError(f"cannot resume: {path} is not a pdgan training state")
        saved = TrainConfig.from_dict(json.loads(state["config"]))
        if saved.preset != self.cfg.preset:
            raise TrainingError(f"cannot resume: {path} was trained with preset {saved.preset!r}, "
                                f"not {self.cfg.preset!r}")
        if state["world"] != self.world:
            raise TrainingError(f"cannot resume: {path} was written by {state['world']} processes, now {self.world}")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.scaler.load_state_dict(state["scaler"])
        self.gen.set_state(state["rng"]["gen"])
        self.data_gen.set_state(state["rng"]["data"])
        torch.set_rng_state(state["rng"]["torch"])
        self.step, self.epoch, self.batch_pos = state["step"], state["epoch"], state["batch_pos"]
        self.phase = state["phase"]
        if self.phase != "gan" and self.step < self.cfg.max_steps:  # --resume with a larger --max-steps
            if self.main:
                print(f"resuming a finished run at step {self.step} to train on to {self.cfg.max_steps}; the latent "
                      "denoiser will be retrained on the new codes afterwards", file=sys.stderr)
            self.phase = "gan"


def _slice(noise, a: int, b: int):
    from pdgan_infer.sampler import SamplerNoise
    return SamplerNoise(noise.x_T[a:b], noise.latent[a:b], noise.z[:, a:b], noise.eps[:, a:b])


def _check_finite(step: int, **values: torch.Tensor) -> None:
    bad = [k for k, v in values.items() if not bool(torch.isfinite(v.detach()).all())]
    if bad:
        raise TrainingError(f"non-finite loss {bad} at step {step}: training stopped before writing a broken "
                            "checkpoint (the last checkpoint is intact); lower the learning rates, use --amp none, "
                            "or resume from the last checkpoint")


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise TrainingError(f"output directory {out} is not writable ({e.strerror}); choose another --out") from None


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()
