"""The PDGAN training loop: DDGAN's alternating D / G updates with the paper's objective, progressive
step sampling, EMA, lazy R1, resumable runs, and the latent-denoiser stage.

One process by default; under `torchrun --nproc_per_node=K -m pdgan_train ...` the generator,
encoder and discriminator are wrapped in DistributedDataParallel (NCCL on GPU, gloo on CPU), data
is split by a DistributedSampler, and only rank 0 logs and writes files.

Run directory: `config.json` (resolved config, paths relative to the directory), `train_state.pt`
(everything `--resume` needs, loaded with `weights_only=True`), `model.safetensors` + `model.json` (the
EMA inference checkpoint `pdgan_infer` loads), `metrics.jsonl`, `samples/step_XXXXXXX.png`, `.lock`.

What a run guarantees (`rundir.py` has the directory's side):
- One writer: OUT/.lock is held while a run writes there; a fresh run never replaces an existing one
  unless asked (`overwrite`). Temporaries that killed writes left are removed at start.
- A checkpoint is never worse than the one it replaces: every file is written atomically, and the
  weights of G, E, D (after each optimiser step, before the EMA sees them) and everything saved (at each
  save) must be finite and below `WEIGHT_LIMIT`.
- Stopping keeps the work: SIGINT, SIGTERM and SIGHUP end the run at the next step boundary, after saving
  that step (further signals during the save are ignored; a third one aborts without saving). Any
  other error saves the last completed step first when that state is consistent and finite.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler

from pdgan_infer import PDGAN, save_checkpoint
from pdgan_infer.config import get_preset
from pdgan_infer.device import resolve_device
from pdgan_infer.distributed import init_distributed
from pdgan_infer.files import OutputError, atomic_path, atomic_write_bytes, check_outputs, record_written
from pdgan_infer.progress import Progress

from . import losses as L
from . import rundir
from .adversarial import d_loss_fake, d_loss_real, g_loss_adv, r1_penalty, r1_weight
from .config import PATHS_KEY, PATHS_RUN_RELATIVE, TrainConfig, TrainingError
from .data import build_dataset, data_inputs, random_hflip, random_translate
from .discriminator import build_discriminator
from .latent import train_latent
from .rundir import STATE_FILE, RunLock, read_state, short

__all__ = ["STATE_FILE", "Trainer", "TrainingError", "WEIGHT_LIMIT"]

WEIGHT_LIMIT = 1e6  # |weight| above this is an explosion (trained weights stay within ~10)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
log = logging.getLogger("pdgan.train")


def _unwrap(m: torch.nn.Module) -> torch.nn.Module:
    return m.module if isinstance(m, DDP) else m


class Trainer:
    """`Trainer(cfg).train()`; `resume` is a run directory to continue, `overwrite` lets a fresh run
    replace the run that `cfg.out` already holds (else that is refused). Every phase (training steps,
    evaluations, sample grids, the latent-denoiser stage) reports its progress (`pdgan_infer.progress`: a
    bar on a terminal, log lines on "pdgan.*" elsewhere); `quiet` turns that off."""

    def __init__(self, cfg: TrainConfig, resume: str | None = None, device: str | None = None,
                 overwrite: bool = False, quiet: bool = False):
        cfg.validate()
        self.cfg = cfg
        self.show = not quiet  # progress bars and lines (pdgan_infer.progress)
        self.device = _training_device(device)
        self.rank, self.world, _ = init_distributed(self.device)  # sets the CUDA device; dies with torchrun
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.out = Path(cfg.out)
        self.main = self.rank == 0
        self.stop_signal: str | None = None  # the first SIGINT/SIGTERM/SIGHUP received during train()
        self._signals_seen, self._progress, self._saved, self._save_failed = 0, "boundary", None, False
        self._lock, self._replace_run = RunLock(self.out), False
        if self.main:
            try:  # not inside the data set, not a symlinked folder (which files it may replace: claim_out)
                check_outputs({"--out": self.out}, data_inputs(cfg.data), folders={"--out"}, overwrite=None)
            except OutputError as e:
                raise TrainingError(str(e)) from None
            rundir.check_writable(self.out)
            new_lock = not os.path.lexists(self._lock.path)
            self._lock.acquire()  # before anything is read or written: a second run fails at once
        try:
            if self.main:
                rundir.remove_stale_temporaries(self.out)
                if resume is None or not _same_dir(_run_dir(resume), self.out):
                    try:
                        self._replace_run = rundir.claim_out(self.out, overwrite)
                    except TrainingError:  # a refused folder is left as it was found
                        if new_lock:
                            self._lock.path.unlink(missing_ok=True)
                        raise
            self._setup(resume)
        except BaseException:
            self._lock.release()
            raise

    def _setup(self, resume: str | None) -> None:
        cfg = self.cfg
        self.model_cfg = get_preset(cfg.preset)
        # Inputs first, so that bad data or missing weights fail before any model is built.
        self.dataset = build_dataset(cfg.data, self.model_cfg.resolution, self.model_cfg.channels,
                                     allow_upscale=cfg.allow_upscale, check_images=cfg.check_images,
                                     progress=self.show and self.main)
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
        self.noise_rng = torch.Generator(self.device).manual_seed(cfg.seed * 1000 + self.rank)  # training noise
        self.flip_rng = torch.Generator().manual_seed(cfg.seed * 1000 + 500 + self.rank)  # flips
        self.step, self.epoch, self.batch_pos, self.phase = 0, 0, 0, "gan"
        self.data_sampler = DistributedSampler(self.dataset, num_replicas=self.world, rank=self.rank, shuffle=True,
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
            self.data_sampler.set_epoch(self.epoch)
            idx = list(self.data_sampler)
            chunks = [idx[i:i + b] for i in range(0, len(idx) - b + 1, b)]
            loader = DataLoader(self.dataset, batch_sampler=chunks[self.batch_pos:], num_workers=self.cfg.num_workers)
            for x, y in loader:
                self.batch_pos += 1
                yield x, y
            self.epoch, self.batch_pos = self.epoch + 1, 0

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.noise_rng, device=self.device)

    def _disc(self, D: torch.nn.Module, x_prev: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """D(x_{t-1}, x_t, t), with DiffAugment's translation of both inputs when augment="translate"
        (the same for real and fake pairs, so it cannot leak into the samples)."""
        shift = round(self.cfg.translate * self.model_cfg.resolution)
        if self.cfg.augment == "translate" and shift > 0:
            x_prev, x_t = random_translate(x_prev, x_t, max_shift=shift, generator=self.noise_rng)
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
        t = L.sample_t(x0.shape[0], T, self._p(), self.noise_rng, self.device)
        x_prev, x_t = self.schedule.q_sample_pairs(x0, t, self.noise_rng)
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
        self._progress = "updated"  # from here on the weights of the step before are gone
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.opt_d)
        return {"d_real": loss.item(), "d_fake": loss_fake.item(), "r1": r1.item()}

    def g_step(self, x0: torch.Tensor) -> dict[str, float]:
        cfg, T = self.cfg, self.schedule.T
        t = L.sample_t(x0.shape[0], T, self._p(), self.noise_rng, self.device)
        _, x_t = self.schedule.q_sample_pairs(x0, t, self.noise_rng)
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
        state saved (as if interrupted; `--resume` continues exactly). A signal (SIGINT, SIGTERM,
        SIGHUP) stops it at the next step boundary with that step saved, then raises KeyboardInterrupt."""
        cfg = self.cfg
        stop = cfg.max_steps if until is None else min(until, cfg.max_steps)
        if self.main:
            self._lock.acquire()
        try:
            if self.main:
                if self._replace_run:
                    rundir.remove_run(self.out)
                    self._replace_run = False
                self.out.mkdir(parents=True, exist_ok=True)
                run_config = {"train": cfg.stored_dict(), "model": self.model_cfg.to_dict(),
                              PATHS_KEY: PATHS_RUN_RELATIVE}
                with rundir.writing(self.out / "config.json"):
                    atomic_write_bytes(self.out / "config.json", json.dumps(run_config, indent=2).encode())
            with self._stop_on_signals():
                return self._run(stop)
        finally:
            self._lock.release()

    def _run(self, stop: int) -> Path:
        cfg = self.cfg
        self._gan_stage(stop)
        if self._stop_requested():
            self._stop_now()
        if self.phase == "gan" and self.step < cfg.max_steps:
            self.save()
            return self.out / "model.safetensors"
        if self.phase == "gan":  # no semantic code (DDGAN baseline): z_T ~ N(0, I), nothing to learn
            self.phase = "latent" if cfg.latent_stage else "done"
            self.save()
            if self.phase == "done":
                self._final_outputs(evaluate=False)
        if self.phase == "latent":
            if self.main and not train_latent(self.ema, self.dataset, self.device, cfg,
                                              lambda: self.stop_signal is not None, self._log, quiet=not self.show):
                self._stop_now(f"during the latent-denoiser stage; the state of step {self.step} is saved (the "
                               "latent stage starts over on resume)")
            self.phase = "done"
            self.save()
            self._final_outputs(evaluate=cfg.digits_eval)
        return self.out / "model.safetensors"

    def _final_outputs(self, evaluate: bool) -> None:
        if self.stop_signal is not None:
            self._stop_now("after the final checkpoint, which is saved (the final sample grid and evaluation "
                           "were skipped)", resume=False)
        if self.main:
            self.sample_grid(final=True)
            if evaluate:
                self.evaluate(final=True)

    def _gan_stage(self, stop: int) -> None:
        cfg = self.cfg
        bar = Progress(cfg.max_steps, "training", "step", self.show and self.main, initial=self.step)
        batches, t_last, n_last = self._batches(), time.perf_counter(), self.step
        snapshot = None
        try:
            while self.phase == "gan" and self.step < stop and not self._stop_requested():
                snapshot, self._progress = self._snapshot(), "started"
                x0, _ = next(batches)
                if cfg.augment == "hflip":
                    x0 = random_hflip(x0, self.flip_rng)
                x0 = x0.to(self.device, non_blocking=True)
                if cfg.channels_last:
                    x0 = x0.contiguous(memory_format=torch.channels_last)
                self._set_lr()
                logs = self.d_step(x0)
                logs.update(self.g_step(x0))
                self._check_weights()  # before the EMA (and any checkpoint) can take them in
                self._update_ema()
                self.step += 1
                self._progress, shown = "boundary", {}
                if self.main and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                    now = time.perf_counter()
                    ips = (self.step - n_last) * cfg.batch_size * self.world / max(now - t_last, 1e-9)
                    t_last, n_last = now, self.step
                    self._log({"step": self.step, "images_per_s": ips, **logs})
                    keys = ("d_real", "d_fake", "g_adv", "pixel", "per")
                    shown = {k: f"{v:.3f}" for k, v in logs.items() if k in keys} | {"img/s": f"{ips:.0f}"}
                    if bar.mode == "log":  # no terminal (nohup, CI): a line with the losses as well
                        log.info(f"step {self.step}/{cfg.max_steps} " + " ".join(f"{k}={v}" for k, v in shown.items()))
                bar.update(1, **shown)
                if self.step % cfg.sample_every == 0 or self.step == cfg.max_steps:
                    self.sample_grid()
                if cfg.digits_eval and (self.step % cfg.eval_every == 0 or self.step == cfg.max_steps):
                    self.evaluate()
                if self.step % cfg.ckpt_every == 0 and self.step < cfg.max_steps:
                    self.save()
        except BaseException as err:
            bar.close(failed=True)
            self._save_after_failure(err, snapshot)
            raise
        bar.close()

    # --- stopping ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _stop_on_signals(self):
        """SIGINT/SIGTERM/SIGHUP request a stop at the next step boundary (`stop_signal`) instead of
        raising wherever the program is; a third one raises KeyboardInterrupt at once. Signals that were
        ignored (nohup's SIGHUP, SIGINT of a background job) stay ignored."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        for s, handler in previous.items():
            if handler is not signal.SIG_IGN:
                signal.signal(s, self._on_signal)
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # No printing here: the handler may run inside a write to the same stream.
        self._signals_seen += 1
        if self.stop_signal is None:
            self.stop_signal = signal.Signals(signum).name
        elif self._signals_seen >= 3:
            raise KeyboardInterrupt

    def _stop_requested(self) -> bool:
        """Whether a stop was requested (on any process: every rank must stop at the same step)."""
        if self.world == 1:
            return self.stop_signal is not None
        flag = torch.tensor([self.stop_signal is not None], dtype=torch.int32,
                            device=self.device if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.stop_signal is None:
            self.stop_signal = "a signal to another process"
        return bool(flag.item())

    def _stop_now(self, where: str | None = None, resume: bool = True):
        """Save the current (completed) step unless it is saved, say so, and raise KeyboardInterrupt."""
        if where is None:
            if self._saved != (self.step, self.phase):
                self.save()
            where = f"at step {self.step}; state saved"
        if self.main:
            log.warning(f"interrupted ({self.stop_signal}) {where}"
                        + (f": resume with --resume {self.out}" if resume else ""))
        raise KeyboardInterrupt

    def _snapshot(self) -> dict[str, Any] | None:
        """What a step changes before its first optimiser update (data position, RNG streams, the
        encoder's running statistics): restored to save the step before when the step fails early."""
        if self.world > 1:
            return None
        buffers = [b for m in (self.G, self.E, self.D) for b in m.buffers()]
        return {"epoch": self.epoch, "batch_pos": self.batch_pos, "gen": self.noise_rng.get_state(),
                "data": self.flip_rng.get_state(), "torch": torch.get_rng_state(), "buffers": buffers,
                "values": [b.clone() for b in buffers]}

    def _restore(self, snapshot: dict[str, Any]) -> None:
        self.epoch, self.batch_pos = snapshot["epoch"], snapshot["batch_pos"]
        self.noise_rng.set_state(snapshot["gen"])
        self.flip_rng.set_state(snapshot["data"])
        torch.set_rng_state(snapshot["torch"])
        with torch.no_grad():
            for b, v in zip(snapshot["buffers"], snapshot["values"]):
                b.copy_(v)

    def _save_after_failure(self, err: BaseException, snapshot: dict[str, Any] | None) -> None:
        """On any error in the GAN stage: save the last completed step when its state is consistent
        (the error came between steps, or before the step's first optimiser update: then the step's
        draws are undone) and finite, and say what was kept. The error itself is re-raised by the caller."""
        if not self.main or self.world > 1 or self._save_failed or self._progress == "diverged":
            return  # several processes cannot agree on a save here; the error says what is kept
        if isinstance(err, KeyboardInterrupt) and self._signals_seen >= 3:
            log.warning(f"stopped at once ({self.stop_signal} x{self._signals_seen}) without saving; "
                        f"{self._last_checkpoint()}")
            return
        if self._progress == "updated" or (self._progress == "started" and snapshot is None):
            log.warning(f"step {self.step + 1} failed after its optimiser update, so it cannot be saved; "
                        f"{self._last_checkpoint()}")
            return
        if self._progress == "started":
            self._restore(snapshot)
            self._progress = "boundary"
        why = "interrupted" if isinstance(err, KeyboardInterrupt) else "stopped by the error below"
        if self._saved != (self.step, self.phase):
            try:
                self.save()
            except Exception as e:  # noqa: BLE001 - reported; the original error is what the caller raises
                log.warning(f"{why} at step {self.step}; saving it failed too ({short(e)})")
                return
        log.warning(f"{why} at step {self.step}; state saved: resume with --resume {self.out}"
                    + ("" if isinstance(err, KeyboardInterrupt) else " once it is fixed"))

    def _last_checkpoint(self) -> str:
        if self._saved is None:
            return f"no checkpoint of this run was written to {self.out}"
        return f"the last checkpoint in {self.out} (step {self._saved[0]}) is intact"

    # --- weights that must not be saved --------------------------------------------------------
    def _check_weights(self) -> None:
        """TrainingError when an optimiser step left a weight of G, E or D non-finite or above
        WEIGHT_LIMIT: before the EMA or a checkpoint takes them in."""
        for name, module in (("generator", self.G), ("encoder", self.E), ("discriminator", self.D)):
            problem = _weight_problem(module, buffers=False)
            if problem:
                self._progress = "diverged"  # (this message says what is kept)
                raise TrainingError(f"non-finite or exploding weights at step {self.step + 1}: the {name}'s "
                                    f"{problem}; training stopped before the EMA or a checkpoint took them in "
                                    f"({self._last_checkpoint()}); lower the learning rates (--lr-g, --lr-d) "
                                    f"or use --amp none, then resume")

    def _bad_state(self) -> str | None:
        """What makes the current state unfit to save (weights or buffers non-finite or exploding)."""
        parts = {"generator": self.G, "encoder": self.E, "discriminator": self.D, "EMA generator": self.ema.generator,
                 "EMA encoder": self.ema.encoder}
        if self.ema.latent is not None:
            parts["latent denoiser"] = self.ema.latent
        for name, module in parts.items():
            problem = _weight_problem(module, buffers=True)
            if problem:
                return f"the {name}'s {problem}"
        return None

    def evaluate(self, final: bool = False) -> dict[str, Any] | None:
        """The digits metrics of the EMA model (`pdgan_train.digits_metrics`), logged to metrics.jsonl as
        {"step", "eval": {...}} and drawn in metrics.png. During the GAN stage z_T is drawn from a
        Gaussian fitted to the codes (no latent denoiser yet); `final` uses the latent denoiser."""
        if not self.main:
            return None
        from .digits_metrics import evaluate_model
        from .plots import plot_run

        z_T = "latent" if final and self.ema.can_draw_z_T else "gaussian"
        result = evaluate_model(self.ema, n=self.cfg.eval_n, z_T=z_T, device=self.device, progress=self.show,
                                desc="final evaluation" if final else f"evaluation at step {self.step}")
        self._log({"step": self.step, "eval": result})
        with rundir.writing(self.out / "metrics.png"):
            plot_run(self.out)
        return result

    def _log(self, record: dict[str, Any]) -> None:
        with rundir.writing(self.out / "metrics.jsonl"):
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            record_written(self.out / "metrics.jsonl")  # appended, not atomic: recorded as the run's own here

    @torch.no_grad()
    def sample_grid(self, final: bool = False) -> Path | None:
        """Row 1: real images; row 2: their 2-step reconstructions z_T = SE(x0) (EMA); rows 3-4:
        samples with z_T from the latent denoiser (final) or a Gaussian fitted to SE codes."""
        if not self.main:
            return None
        from pdgan_infer.images import save_grid
        from pdgan_infer.sampler import images_from_seeds, to_uint8
        n, model = 8, self.ema
        path = self.out / "samples" / (f"step_{self.step:07d}.png" if not final else "final.png")
        with Progress(4 * n, f"sample grid {path.name}", "img", self.show) as bar:
            reals = torch.stack([self.dataset[i][0] for i in range(min(len(self.dataset), 64))]).to(self.device)
            codes = model.encoder(reals) if model.latent_slot != "none" else None  # baseline: no reconstructions
            recon = images_from_seeds(model, range(n), None if codes is None else codes[:n], device=self.device)
            bar.update(2 * n)  # the real images and their reconstructions
            if codes is None or (final and model.latent is not None):
                draw = model.draw_z_T
            else:
                def draw(start):
                    return codes.mean(0) + codes.std(0) * start
            gen = images_from_seeds(model, range(n, 3 * n), draw_z_T=draw, device=self.device)
            bar.update(2 * n)
            grid = to_uint8(torch.cat([reals[:n], recon, gen]).cpu()).numpy()
            with rundir.writing(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                save_grid(grid, path, nrow=n)
        return path

    # --- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": "pdgan-train-state", "config": json.dumps(self.cfg.stored_dict(), indent=2, sort_keys=True),
            "step": self.step, "epoch": self.epoch,
            "batch_pos": self.batch_pos, "phase": self.phase, "world": self.world,
            "model": self.model.state_dict(), "ema": self.ema.state_dict(), "D": _unwrap(self.D).state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": {"gen": self.noise_rng.get_state(), "data": self.flip_rng.get_state(),  # keys: the state format
                    "torch": torch.get_rng_state()},
        }

    def save(self) -> None:
        """Rank 0 writes the resume state, then the EMA inference checkpoint, each atomically, after
        checking that nothing in them is non-finite or exploding: a bad state never replaces a good
        checkpoint. A failed write is one TrainingError naming the file; the old file stays."""
        if self.world > 1:
            dist.barrier()
        if not self.main:
            return
        self._save_failed = True  # until both files are written
        problem = self._bad_state()
        if problem:
            raise TrainingError(f"refusing to save step {self.step}: {problem}; {self._last_checkpoint()}; lower "
                                f"the learning rates (--lr-g, --lr-d) or use --amp none, then resume")
        state_path, weights = self.out / STATE_FILE, self.out / "model.safetensors"
        latent = self.ema.latent
        trained = self.phase == "done" and self.cfg.latent_stage
        try:
            with Progress(2, f"checkpoint of step {self.step}", "file", self.show) as bar:
                with rundir.writing(state_path), atomic_path(state_path) as tmp:
                    torch.save(self.state_dict(), tmp)
                bar.update(1)
                if not trained:  # an untrained latent denoiser is left out of the inference checkpoint
                    self.ema.latent = None
                with rundir.writing(weights):
                    save_checkpoint(self.ema, self.out / "model", meta={"step": self.step, "phase": self.phase,
                                                                        "train_config": self.cfg.stored_dict()})
                bar.update(1)
        except TrainingError as e:
            raise TrainingError(f"{e}; {self._last_checkpoint()}") from e.__cause__
        finally:
            self.ema.latent = latent
        self._saved, self._save_failed = (self.step, self.phase), False

    def load_state(self, run_dir: str) -> None:
        path = _run_dir(run_dir) / STATE_FILE if Path(run_dir).is_dir() else Path(run_dir)
        state = read_state(path)  # keys and types checked
        if state["config"].preset != self.cfg.preset:
            raise TrainingError(f"cannot resume: {path} was trained with preset {state['config'].preset!r}, "
                                f"not {self.cfg.preset!r}")
        if state["world"] != self.world:
            raise TrainingError(f"cannot resume: {path} was written by {state['world']} processes, now {self.world}")
        parts = [("model", self.model), ("ema", self.ema), ("D", self.D), ("opt_g", self.opt_g),
                 ("opt_d", self.opt_d), ("scaler", self.scaler)]
        for key, target in parts:
            try:
                target.load_state_dict(state[key])
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
                raise TrainingError(f"cannot resume: the {key} entry of {path} does not fit this {self.cfg.preset!r} "
                                    f"run ({short(e, 200)})") from None
        try:
            self.noise_rng.set_state(state["rng"]["gen"])
            self.flip_rng.set_state(state["rng"]["data"])
            torch.set_rng_state(state["rng"]["torch"])
        except (RuntimeError, ValueError, TypeError) as e:
            raise TrainingError(f"cannot resume: the random-generator states in {path} are damaged "
                                f"({short(e)})") from None
        self.step, self.epoch, self.batch_pos = state["step"], state["epoch"], state["batch_pos"]
        self.phase = state["phase"]
        if _same_dir(path.parent, self.out):
            self._saved = (self.step, self.phase)
        if self.phase != "gan" and self.step < self.cfg.max_steps:  # --resume with a larger --max-steps
            if self.main:
                log.warning(f"resuming a finished run at step {self.step} to train on to {self.cfg.max_steps}; the "
                            "latent denoiser will be retrained on the new codes afterwards")
            self.phase = "gan"


def _check_finite(step: int, **values: torch.Tensor) -> None:
    bad = [k for k, v in values.items() if not bool(torch.isfinite(v.detach()).all())]
    if bad:
        raise TrainingError(f"non-finite loss {bad} at step {step}: training stopped; lower the learning rates "
                            "(--lr-g, --lr-d) or use --amp none, then resume")


def _weight_problem(module: torch.nn.Module, buffers: bool) -> str | None:
    """'weights are not finite', 'weights reach 3e+09 ...', 'buffers are not finite' or None."""
    params = [p.detach() for p in _unwrap(module).parameters()]
    if params:
        worst = torch.stack(torch._foreach_norm(params, math.inf)).max().item()  # max |w|, NaN if any is NaN
        if not math.isfinite(worst):
            return "weights are not finite (NaN or inf)"
        if worst > WEIGHT_LIMIT:
            return f"weights reach {worst:.3g} (more than {WEIGHT_LIMIT:g}: they are exploding)"
    if buffers:
        floats = [b for b in _unwrap(module).buffers() if b.is_floating_point()]
        if floats and not all(bool(torch.isfinite(b).all()) for b in floats):
            return "buffers (running statistics) are not finite"
    return None


def _run_dir(resume: str | os.PathLike) -> Path:
    """The run directory of a `resume` argument (the directory, or its train_state.pt)."""
    return Path(resume) if Path(resume).is_dir() else Path(resume).parent


def _same_dir(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _training_device(device: str | None) -> torch.device:
    """`resolve_device` (None: auto), with a bare "cuda" meaning cuda:$LOCAL_RANK (0 without torchrun)."""
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev

