"""Training configuration: one frozen dataclass, per-preset defaults (DDGAN's published settings for
CIFAR-10 and CelebA-HQ 256) and the paper's ablation rows (Table 1) as named switch sets."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "cifar10"  # model preset (pdgan_infer.PRESETS)
    data: str = ""  # dataset: "digits", a CIFAR-10 batches dir, or an image folder
    out: str = "runs/pdgan"  # run directory (checkpoints, samples, metrics)
    max_steps: int = 200_000  # optimisation steps (N of Eq. 11 counts steps, not epochs)
    batch_size: int = 64  # images per process per step
    lr_g: float = 1.6e-4  # Adam lr of generator + semantic encoder
    lr_d: float = 1.25e-4  # Adam lr of the discriminator
    lr_min: float = 1e-5  # cosine decay floor (DDGAN's eta_min)
    cosine: bool = True  # cosine learning-rate decay over max_steps
    beta1: float = 0.5  # Adam beta1 (DDGAN)
    beta2: float = 0.9  # Adam beta2 (DDGAN)
    ema_decay: float = 0.9999  # EMA of G and SE (the exported weights)
    r1_gamma: float = 0.02  # R1 weight (applied as r1_gamma / 2, DDGAN)
    lazy_reg: int = 15  # R1 every lazy_reg steps (DDGAN's lazy regularisation)
    d_ngf: int = 64  # discriminator width
    augment: str = "hflip"  # "hflip" (data flips, DDGAN), "translate" (DiffAugment shifts of D's inputs), "none"
    translate: float = 0.125  # largest DiffAugment shift as a fraction of the resolution (augment="translate")
    channels_last: bool = True  # feed channels-last batches (oneDNN/cuDNN then run every conv channels-last)
    # --- the paper's objective and its ablation switches -------------------------------------
    encoder: str = "first"  # "none": random z everywhere (DDGAN); "all": SE(x0) at every step; "first": at t=T only
    pixel_loss: bool = True  # L1(G(x_T, SE(x0), T), x0)          (Eq. 9, first term)
    feature_loss: bool = True  # L1 on VGG16 features at step T      (Eq. 9, second term)
    perceptual_chain: bool = True  # L_per: L1(G(x_t, z, t), x0^{t+1}) for t < T (Eq. 10)
    progressive: bool = True  # P(t=T) falls linearly P_max -> P_min (Eq. 11); off: t ~ U{1..T}
    p_max: float = 0.8  # P at the start
    p_min: float = 0.4  # P at the end
    w_adv: float = 1.0  # weight of the adversarial generator loss
    w_pixel: float = 1.0  # weight of the pixel L1
    w_feature: float = 1.0  # weight of the VGG-feature L1
    w_per: float = 1.0  # weight of L_per
    vgg_weights: str | None = None  # local VGG16 weights file (else env/cache/download)
    # --- latent denoiser (unconditional sampling, Sec. 5.1) ------------------------------------
    latent_steps: int = 20_000  # optimisation steps of the latent DDPM after the main training
    latent_batch: int = 256  # batch of codes
    latent_lr: float = 1e-4  # Adam lr of the latent denoiser
    # --- running ---------------------------------------------------------------------------
    seed: int = 0  # everything random derives from it (and the rank)
    amp: str = "none"  # autocast: "none", "bf16" or "fp16"
    num_workers: int = 0  # DataLoader workers (image folders)
    allow_upscale: bool = False  # let image folders upscale images smaller than the resolution
    log_every: int = 50  # JSONL metrics + progress-bar refresh
    sample_every: int = 1000  # PNG sample grid
    ckpt_every: int = 2000  # atomic checkpoint (resume state + EMA inference checkpoint)
    eval_every: int = 0  # digits data: the 8x8 metrics of the EMA model every N steps (0: never)
    eval_n: int = 500  # samples per in-training evaluation

    @property
    def latent_stage(self) -> bool:
        """Whether the run trains a latent denoiser after the GAN stage (not for DDGAN's encoder="none")."""
        return self.latent_steps > 0 and self.encoder != "none"

    @property
    def digits_eval(self) -> bool:
        """Whether the trainer evaluates the digits metrics every `eval_every` steps and at the end."""
        return self.eval_every > 0 and self.data == "digits"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **kw: Any) -> TrainConfig:
        return dataclasses.replace(self, **kw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training config keys {sorted(unknown)}")
        return cls(**d)

    def validate(self) -> None:
        checks = [
            (self.max_steps >= 1, "max_steps must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (min(self.lr_g, self.lr_d) > 0, "learning rates must be positive"),
            (0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1)"),
            (self.encoder in ("none", "all", "first"), "encoder must be 'none', 'all' or 'first'"),
            (0.0 <= self.p_min <= self.p_max <= 1.0, "need 0 <= p_min <= p_max <= 1"),
            (self.amp in ("none", "bf16", "fp16"), "amp must be 'none', 'bf16' or 'fp16'"),
            (self.augment in ("none", "hflip", "translate"), "augment must be 'none', 'hflip' or 'translate'"),
            (0.0 <= self.translate <= 0.5, "translate must be in [0, 0.5]"),
            (self.lazy_reg >= 1, "lazy_reg must be >= 1"),
            (min(self.log_every, self.sample_every, self.ckpt_every) >= 1, "*_every must be >= 1"),
            (self.eval_every >= 0 and self.eval_n >= 10, "eval_every must be >= 0 and eval_n >= 10"),
            (not (self.encoder == "none" and (self.pixel_loss or self.feature_loss)),
             "pixel/feature L1 need the semantic encoder (encoder='first' or 'all')"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"invalid training config: {msg}")


# Per-preset defaults: DDGAN's published hyper-parameters where they exist.
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "cifar10": dict(batch_size=64, lr_g=1.6e-4, lr_d=1.25e-4, r1_gamma=0.02, lazy_reg=15, ema_decay=0.9999,
                    d_ngf=64, max_steps=200_000),
    "celebahq256": dict(batch_size=4, lr_g=2e-4, lr_d=1e-4, r1_gamma=2.0, lazy_reg=10, ema_decay=0.9999,
                        d_ngf=64, max_steps=300_000),
    # digits: no ImageNet VGG16 offline, so the feature L1 is off by default (turn on with weights).
    # Digits: 1437 training images, so DiffAugment translations instead of flips (a mirrored digit is
    # not a digit), a short run at batch 32 that fits 2 CPU cores, EMA over the last ~1000 steps.
    "digits": dict(batch_size=32, lr_g=2e-4, lr_d=1e-4, r1_gamma=0.02, lazy_reg=15, ema_decay=0.999,
                   d_ngf=32, max_steps=2400, feature_loss=False, latent_steps=10_000, sample_every=200,
                   ckpt_every=200, log_every=20, augment="translate", eval_every=200),
}

# Table 1 of the paper, each row adding one component to the previous one.
ABLATIONS: dict[str, dict[str, Any]] = {
    "baseline": dict(encoder="none", pixel_loss=False, feature_loss=False, perceptual_chain=False, progressive=False),
    "encoder": dict(encoder="all", pixel_loss=False, feature_loss=False, perceptual_chain=False, progressive=False),
    "pixel": dict(encoder="all", pixel_loss=True, feature_loss=False, perceptual_chain=False, progressive=False),
    "feature": dict(encoder="first", pixel_loss=True, feature_loss=True, perceptual_chain=False, progressive=False),
    "full": dict(encoder="first", pixel_loss=True, feature_loss=True, perceptual_chain=True, progressive=True),
}


def resolve_train_config(preset: str, ablation: str | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the preset's, then an ablation row, then explicit overrides (None = unset)."""
    from pdgan_infer.config import get_preset
    get_preset(preset)  # validates the name
    if ablation is not None and ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; choose one of {list(ABLATIONS)}")
    values: dict[str, Any] = {"preset": preset, **PRESET_DEFAULTS.get(preset, {})}
    if ablation is not None:
        values.update(ABLATIONS[ablation])
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = TrainConfig(**values)
    cfg.validate()
    return cfg
