"""Training configuration: one frozen dataclass, per-preset defaults (DDGAN's published settings for
CIFAR-10 and CelebA-HQ 256) and the paper's ablation rows (Table 1) as named switch sets.

A run directory's `config.json` holds the resolved config with its paths relative to the run
directory itself (`out` is "."), so a run is found by `--resume DIR` alone: a copied or moved run, or
one resumed from another working directory, continues in DIR (`read_run_config`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdgan_infer.errors import PDGANError

RUN_CONFIG = "config.json"  # the resolved config in a run directory
PATHS_KEY, PATHS_RUN_RELATIVE = "paths", "relative to the run directory"  # config.json's marker (absent: old runs)
MAX_CONFIG_BYTES = 1 << 20


class TrainingError(PDGANError, RuntimeError):
    """Training cannot start or go on; the message says why and what to do."""


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
    check_images: bool = False  # decode every image of an image folder at start (else headers only)
    log_every: int = 50  # JSONL metrics + the line (or bar) with the losses
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
        if not isinstance(d, dict):
            raise ValueError(f"a training config must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training config keys {sorted(map(str, unknown))}")
        return cls(**d)

    def validate(self) -> None:
        """ValueError naming the first field of the wrong type or out of range (every number is checked
        to be finite and within its range), or a contradiction between fields."""
        for f in dataclasses.fields(self):
            _check_field(f.name, getattr(self, f.name))
        checks = [
            (self.encoder in ("none", "all", "first"), "encoder must be 'none', 'all' or 'first'"),
            (self.p_min <= self.p_max, "need p_min <= p_max"),
            (self.amp in ("none", "bf16", "fp16"), "amp must be 'none', 'bf16' or 'fp16'"),
            (self.augment in ("none", "hflip", "translate"), "augment must be 'none', 'hflip' or 'translate'"),
            (not (self.encoder == "none" and (self.pixel_loss or self.feature_loss)),
             "pixel/feature L1 need the semantic encoder (encoder='first' or 'all')"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"invalid training config: {msg}")

    # --- config.json: paths relative to the run directory ------------------------------------------
    def stored_dict(self) -> dict[str, Any]:
        """`to_dict()` as a run directory stores it: `out` is "." (the directory itself) and relative
        paths (data, vgg_weights) are relative to the run directory instead of the working directory."""
        d = self.to_dict()
        d["out"] = "."
        for key in _path_fields(d):
            path = Path(d[key]).expanduser()
            if not path.is_absolute():
                d[key] = os.path.relpath(os.path.abspath(path), os.path.abspath(self.out))
        return d

    @classmethod
    def from_stored(cls, d: dict[str, Any], run_dir: str | os.PathLike, run_relative: bool = True) -> TrainConfig:
        """The config `stored_dict` wrote, its relative paths made usable from the working directory:
        resolved against `run_dir` (`run_relative`), else kept (a config.json of an older version, whose
        paths were relative to the working directory of its launch). `out` is left as stored."""
        cfg = cls.from_dict(d)
        if not run_relative:
            return cfg
        fixed = {key: os.path.normpath(os.path.join(run_dir, d[key])) for key in _path_fields(d)
                 if not Path(d[key]).expanduser().is_absolute()}
        return cfg.replace(**fixed)


def _path_fields(d: dict[str, Any]) -> list[str]:
    """The keys of `d` holding a filesystem path ("digits" names the bundled data set, not a folder)."""
    keys = []
    if isinstance(d.get("data"), str) and d["data"] not in ("", "digits"):
        keys.append("data")
    if isinstance(d.get("vgg_weights"), str) and d["vgg_weights"]:
        keys.append("vgg_weights")
    return keys


# Every numeric field: (type, lowest, highest, lowest excluded). Ranges are what makes sense, not what
# merely runs: a NaN or infinite rate, a negative R1 weight or a million workers is a mistake.
_INT, _FLOAT = "an integer", "a finite number"
_RANGES: dict[str, tuple[str, float, float, bool]] = {
    "max_steps": (_INT, 1, 10**9, False), "batch_size": (_INT, 1, 1 << 16, False),
    "lr_g": (_FLOAT, 0.0, 1.0, True), "lr_d": (_FLOAT, 0.0, 1.0, True), "lr_min": (_FLOAT, 0.0, 1.0, False),
    "beta1": (_FLOAT, 0.0, 1.0 - 1e-12, False), "beta2": (_FLOAT, 0.0, 1.0 - 1e-12, False),
    "ema_decay": (_FLOAT, 0.0, 1.0 - 1e-12, False), "r1_gamma": (_FLOAT, 0.0, 1e6, False),
    "lazy_reg": (_INT, 1, 10**6, False), "d_ngf": (_INT, 1, 4096, False), "translate": (_FLOAT, 0.0, 0.5, False),
    "p_max": (_FLOAT, 0.0, 1.0, False), "p_min": (_FLOAT, 0.0, 1.0, False),
    "w_adv": (_FLOAT, 0.0, 1e6, False), "w_pixel": (_FLOAT, 0.0, 1e6, False),
    "w_feature": (_FLOAT, 0.0, 1e6, False), "w_per": (_FLOAT, 0.0, 1e6, False),
    "latent_steps": (_INT, 0, 10**9, False), "latent_batch": (_INT, 1, 1 << 20, False),
    "latent_lr": (_FLOAT, 0.0, 1.0, True), "seed": (_INT, 0, 2**32 - 1, False),
    "num_workers": (_INT, 0, 256, False), "log_every": (_INT, 1, 10**9, False),
    "sample_every": (_INT, 1, 10**9, False), "ckpt_every": (_INT, 1, 10**9, False),
    "eval_every": (_INT, 0, 10**9, False), "eval_n": (_INT, 10, 10**6, False),
}
_BOOLS = ("cosine", "channels_last", "pixel_loss", "feature_loss", "perceptual_chain", "progressive",
          "allow_upscale", "check_images")
_STRINGS = ("preset", "data", "out", "encoder", "augment", "amp")


def _check_field(name: str, value: Any) -> None:
    def fail(expected: str) -> None:
        raise ValueError(f"invalid training config: {name} must be {expected}, got {type(value).__name__} "
                         f"{value!r}"[:200])

    if name in _RANGES:
        kind, lo, hi, open_lo = _RANGES[name]
        numeric = isinstance(value, int) if kind == _INT else isinstance(value, (int, float))
        if not numeric or isinstance(value, bool):
            fail(kind)
        span = f"{'(' if open_lo else '['}{lo:g}, {hi:g}]"
        if not math.isfinite(value) or value < lo or value > hi or (open_lo and value == lo):
            fail(f"{kind} in {span}")
    elif name in _BOOLS and not isinstance(value, bool):
        fail("true or false")
    elif name in _STRINGS and not isinstance(value, str):
        fail("a string")
    elif name == "vgg_weights" and not (value is None or isinstance(value, str)):
        fail("a path or null")


def read_run_config(run_dir: str | os.PathLike) -> tuple[TrainConfig, Path]:
    """(config, recorded out) of the run in `run_dir` from its config.json, validated, its paths usable
    from the working directory. The recorded out is the run directory the file names: `run_dir` itself
    for this version (it stores "."), the launch's --out for older ones (relative to the working
    directory of that launch). TrainingError (one line) when the file cannot be read or is malformed."""
    path = Path(run_dir) / RUN_CONFIG
    where = f"cannot resume: {path}"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise TrainingError(f"{where} not found (expected a run directory of pdgan-train)") from None
    except OSError as e:
        raise TrainingError(f"{where} cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise TrainingError(f"{where} is not a regular file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise TrainingError(f"{where} is {st.st_size} bytes, too large for a training config")
    try:
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise TrainingError(f"{where} cannot be read ({e.strerror})") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError
        raise TrainingError(f"{where} is corrupt ({e})"[:300]) from None
    from pdgan_infer.checkpoint import FORMAT
    if isinstance(data, dict) and data.get("format") == FORMAT:
        raise TrainingError(f"cannot resume: {run_dir} is a model folder written by save_pretrained, not a "
                            "pdgan-train run (it holds no training state)")
    if not isinstance(data, dict) or not isinstance(data.get("train"), dict):
        raise TrainingError(f"{where} is corrupt: expected a mapping with a 'train' mapping")
    run_relative = data.get(PATHS_KEY) == PATHS_RUN_RELATIVE
    try:
        cfg = TrainConfig.from_stored(data["train"], run_dir, run_relative)
        cfg.validate()
    except (TypeError, ValueError) as e:
        raise TrainingError(f"{where}: {e}"[:300]) from None
    recorded = Path(run_dir, cfg.out) if run_relative else Path(cfg.out).expanduser()
    return cfg, recorded


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
