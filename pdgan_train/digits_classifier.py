"""A small CNN classifier of scikit-learn's digits, the feature network of the digits metrics
(digits FID, class coverage, confidence, interpolation smoothness) where Inception means nothing.

Input: images exactly as `pdgan_train.data.build_dataset("digits", 32)` yields them, (N, C, 32, 32)
in [-1, 1] (C = 1 or 3; the channels are averaged, so grey RGB and 1-channel images agree).

    stem   conv3x3(1->16)  ReLU maxpool2      32 -> 16
    block  conv3x3(16->32) ReLU maxpool2      16 -> 8
    block  conv3x3(32->64) ReLU maxpool2       8 -> 4
    hidden linear(1024->64)                   `features(x)`: the (N, 64) penultimate layer, taken
                                              before its ReLU (half of the units never fire on
                                              digits, so post-ReLU features would be half zeros)
    head   ReLU, linear(64->10)               `logits(x)`

Trained once with fixed seeds on a stratified 80/20 split of the 1797 digits (split seed 0), with
small random affine jitter, and shipped as `assets/digits_classifier.safetensors` plus
`assets/digits_classifier.json` (architecture, split, training settings, test accuracy, sha256).
Retrain: `python -m pdgan_train.digits_classifier --train` (about 1.5 CPU-minutes).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ASSETS = Path(__file__).resolve().parent / "assets"
WEIGHTS_FILE = "digits_classifier.safetensors"
FORMAT = "pdgan-digits-classifier"
SPLIT_SEED = 0
TEST_FRACTION = 0.2
RESOLUTION = 32


@dataclass(frozen=True)
class ClassifierConfig:
    widths: tuple[int, ...] = (16, 32, 64)  # channels of the three conv stages
    feature_dim: int = 64  # width of the penultimate layer (the features)
    num_classes: int = 10  # digits 0-9
    resolution: int = RESOLUTION  # input height = width
    dropout: float = 0.2  # before the head, training only


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 20  # passes over the training split
    batch_size: int = 64  # images per step
    lr: float = 2e-3  # AdamW peak learning rate (cosine decay to 0)
    weight_decay: float = 1e-4  # AdamW weight decay
    seed: int = 0  # torch seed (init, shuffling, augmentation)
    max_shift: float = 0.1  # random translation, fraction of the image size
    max_rotate: float = 10.0  # random rotation, degrees
    scale_range: float = 0.1  # random zoom in [1 - s, 1 + s]


class DigitsClassifier(nn.Module):
    def __init__(self, cfg: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.cfg = cfg
        chans = (1, *cfg.widths)
        self.stages = nn.ModuleList(nn.Conv2d(cin, cout, 3, padding=1) for cin, cout in zip(chans[:-1], chans[1:]))
        side = cfg.resolution >> len(cfg.widths)
        self.hidden = nn.Linear(cfg.widths[-1] * side * side, cfg.feature_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, R, R) in [-1, 1] -> (N, feature_dim) penultimate pre-activations."""
        if x.ndim != 4 or x.shape[-2:] != (self.cfg.resolution,) * 2:
            raise ValueError(f"DigitsClassifier expects (N, C, {self.cfg.resolution}, {self.cfg.resolution}) "
                             f"images in [-1, 1], got shape {tuple(x.shape)}")
        h = x.float().mean(dim=1, keepdim=True)
        for conv in self.stages:
            h = F.max_pool2d(F.relu(conv(h)), 2)
        return self.hidden(h.flatten(1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(F.relu(self.features(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


# --- data ----------------------------------------------------------------------------------------
def digits_arrays(resolution: int = RESOLUTION) -> tuple[torch.Tensor, np.ndarray]:
    """All 1797 digits as (N, 1, R, R) float32 in [-1, 1] (via `build_dataset`) and their labels."""
    from .data import build_dataset

    ds = build_dataset("digits", resolution, channels=1, split="all")
    return torch.stack([ds[i][0] for i in range(len(ds))]), np.asarray(ds.labels, dtype=np.int64)


def stratified_split(labels: np.ndarray, seed: int = SPLIT_SEED,
                     test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): scikit-learn's stratified `train_test_split`, sorted."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(test)


def _jitter(x: torch.Tensor, s: TrainSettings, g: torch.Generator) -> torch.Tensor:
    """Random rotation, zoom and shift of each image (bilinear, background = -1)."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(s.max_rotate)
    scale = 1 + (torch.rand(n, generator=g) * 2 - 1) * s.scale_range
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * 2 * s.max_shift
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


@torch.no_grad()
def accuracy(model: DigitsClassifier, x: torch.Tensor, y: np.ndarray, batch_size: int = 512) -> float:
    model.eval()
    pred = torch.cat([model.logits(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    return float((pred.numpy() == y).mean())


def train(settings: TrainSettings = TrainSettings(), cfg: ClassifierConfig = ClassifierConfig(),
          log: bool = True) -> tuple[DigitsClassifier, dict]:
    """Train from scratch on the fixed split; returns the model (eval mode) and its metadata."""
    torch.manual_seed(settings.seed)
    g = torch.Generator().manual_seed(settings.seed)
    x, y = digits_arrays(cfg.resolution)
    tr, te = stratified_split(y)
    model = DigitsClassifier(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps = settings.epochs * math.ceil(len(tr) / settings.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    xt, yt = x[tr], torch.from_numpy(y[tr])
    start = time.time()
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(tr), generator=g)
        for i in range(0, len(tr), settings.batch_size):
            b = order[i:i + settings.batch_size]
            loss = F.cross_entropy(model.logits(_jitter(xt[b], settings, g)), yt[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if log and (epoch + 1) % 5 == 0:
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  test acc {accuracy(model, x[te], y[te]):.4f}",
                  file=sys.stderr)
    model.eval()
    meta = {"format": FORMAT, "version": 1, "architecture": asdict(cfg), "train": asdict(settings),
            "split": {"seed": SPLIT_SEED, "test_fraction": TEST_FRACTION, "stratified": True,
                      "method": "sklearn.model_selection.train_test_split", "n_train": int(len(tr)),
                      "n_test": int(len(te))},
            "preprocessing": "pdgan_train.data.build_dataset('digits', 32): /8 - 1, bilinear upsampling "
                             "(align_corners=False); channels averaged",
            "train_accuracy": accuracy(model, x[tr], y[tr]), "test_accuracy": accuracy(model, x[te], y[te]),
            "train_seconds": round(time.time() - start, 1), "torch": torch.__version__}
    return model, meta


# --- files ---------------------------------------------------------------------------------------
def save_classifier(model: DigitsClassifier, meta: dict, folder: str | os.PathLike = ASSETS) -> Path:
    """Write `digits_classifier.safetensors` and `.json` (with the weights' sha256) into `folder`."""
    from safetensors.torch import save_file

    from pdgan_infer.checkpoint import atomic_path, atomic_write_bytes, sha256_file

    weights = Path(folder) / WEIGHTS_FILE
    with atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata={"format": FORMAT})
    meta = {**meta, "sha256": sha256_file(weights)}
    atomic_write_bytes(weights.with_suffix(".json"), (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return weights


def classifier_info(path: str | os.PathLike | None = None) -> dict:
    """The JSON beside the weights (architecture, split, test accuracy, sha256)."""
    weights = Path(path) if path is not None else ASSETS / WEIGHTS_FILE
    meta_path = weights.with_suffix(".json")
    if not weights.is_file() or not meta_path.is_file():
        raise FileNotFoundError(f"digits classifier not found: need {weights} and {meta_path.name} beside it; "
                                f"recreate them with: python -m pdgan_train.digits_classifier --train")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path} is not a pdgan digits-classifier description (format != {FORMAT!r})")
    return meta


def load_digits_classifier(path: str | os.PathLike | None = None,
                           device: str | torch.device = "cpu") -> DigitsClassifier:
    """The shipped (or the given) classifier in eval mode, after checking its sha256 and shapes."""
    from safetensors.torch import load_file

    from pdgan_infer.checkpoint import sha256_file

    weights = Path(path) if path is not None else ASSETS / WEIGHTS_FILE
    meta = classifier_info(weights)
    if sha256_file(weights) != meta.get("sha256"):
        raise ValueError(f"{weights} does not match the sha256 in {weights.with_suffix('.json').name}: truncated "
                         "or replaced; retrain with: python -m pdgan_train.digits_classifier --train")
    arch = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["architecture"].items()}
    model = DigitsClassifier(ClassifierConfig(**arch))
    model.load_state_dict(load_file(str(weights)))
    return model.to(device).eval().requires_grad_(False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pdgan_train.digits_classifier",
                                description="Train (--train) or evaluate the digits classifier used by the metrics.")
    p.add_argument("--train", action="store_true", help="retrain from scratch and write the weights + JSON")
    p.add_argument("--out", default=str(ASSETS), help="folder for the files (default: the package's assets)")
    p.add_argument("--epochs", type=int, default=TrainSettings.epochs, help="training epochs (default %(default)s)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    if args.train:
        if args.epochs < 1:
            p.error("--epochs must be >= 1")
        model, meta = train(TrainSettings(epochs=args.epochs))
        path = save_classifier(model, meta, args.out)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB): test accuracy {meta['test_accuracy']:.4f} "
              f"on {meta['split']['n_test']} held-out digits ({meta['train_seconds']} s)")
        return 0
    weights = Path(args.out) / WEIGHTS_FILE
    model = load_digits_classifier(weights)
    x, y = digits_arrays()
    _, te = stratified_split(y)
    print(f"{weights}: test accuracy {accuracy(model, x[te], y[te]):.4f} on {len(te)} held-out digits "
          f"(recorded: {classifier_info(weights)['test_accuracy']:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
