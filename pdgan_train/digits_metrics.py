"""Digits metrics at the data's native 8x8 resolution, built so that blurred shapes cannot pass them.

The digits are 8x8 images upsampled to 32x32, so every sample is pooled back to 8x8 (area average of
the channel mean, in the data's units 0..16) and judged there, against the held-out split
(`pdgan_train.data.DigitsDataset(split="test")`) and the training split, both pooled the same way:

    classes      a second classifier, independent of the 32x32 CNN: multinomial logistic regression on
                 the 64 pooled pixels (standardised), fitted on the training split and shipped as
                 `assets/digits8x8_logreg.json` -> class_shares (10), min/max_class_share, confidence_8x8
    realism      median distance from each sample to its nearest training digit, over the same median for
                 the held-out digits: 1 = as close to the training set as unseen real digits; a blur or a
                 blend of digits sits between the training digits and scores higher -> realism_ratio
    pr           improved precision/recall (k = 3) against the held-out digits -> precision_8x8, recall_8x8
    recon        share of held-out digits whose 2-step reconstruction from z_T = SE(x0) the 8x8
                 classifier labels as the digit -> recon_accuracy
    probe        logistic regression from SE(x0) fitted on the training split, accuracy on the held-out
                 split -> probe_accuracy

`python -m pdgan_train.digits_metrics --fit` refits the classifier (deterministic: lbfgs on fixed data).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import precision_recall

ASSETS = Path(__file__).parent / "assets"
CLASSIFIER_FILE = ASSETS / "digits8x8_logreg.json"
FORMAT = "pdgan-digits8x8-logreg"
NATIVE = 8  # the digits' own resolution
MAX_VALUE = 16.0  # the digits' pixel range is 0..16
LOGREG_C = 0.3  # inverse L2 strength: the best held-out accuracy of 0.01-10 (96.9%)


# --- pooling and reference sets ------------------------------------------------------------------
def pool8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, H, W) float in [-1, 1], or uint8 (N, H, W, C), -> (N, 64) float64 in digit units 0..16:
    channel mean, area average to 8x8."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"numpy images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    else:
        x = images.detach().float().cpu()
    if x.ndim != 4 or x.shape[-1] % NATIVE or x.shape[-2] % NATIVE:
        raise ValueError(f"images must be (N, C, H, W) with H, W multiples of {NATIVE}, got {tuple(x.shape)}")
    x = F.adaptive_avg_pool2d(x.mean(1, keepdim=True), NATIVE)
    return ((x.clamp(-1, 1) + 1.0) * (MAX_VALUE / 2)).reshape(len(x), -1).double().numpy()


@lru_cache(maxsize=4)
def reference(split: str, resolution: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(pooled (N, 64), labels (N,)) of a digits split, through the training pipeline (upsampled to
    `resolution` and quantised to uint8 like the samples, then pooled back)."""
    x, labels = _images(split, resolution, 1)
    x = torch.round((x + 1) * 127.5).clamp(0, 255) / 127.5 - 1  # the uint8 quantisation of to_uint8
    return pool8(x), labels


# --- the 8x8 classifier --------------------------------------------------------------------------
class Classifier8x8:
    """Softmax regression on standardised pooled pixels, from the shipped JSON (no sklearn needed)."""

    def __init__(self, params: dict[str, Any]):
        if params.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (format = {params.get('format')!r})")
        self.mean, self.scale = np.asarray(params["mean"]), np.asarray(params["scale"])
        self.coef, self.intercept = np.asarray(params["coef"]), np.asarray(params["intercept"])
        if self.coef.shape != (10, NATIVE * NATIVE) or self.intercept.shape != (10,):
            raise ValueError(f"classifier shapes {self.coef.shape}/{self.intercept.shape}, expected (10, 64)/(10,)")
        self.info = {k: v for k, v in params.items() if k not in ("mean", "scale", "coef", "intercept")}

    def probs(self, pooled: np.ndarray) -> np.ndarray:
        logits = ((pooled - self.mean) / self.scale) @ self.coef.T + self.intercept
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)


def fit_classifier(c: float = LOGREG_C) -> dict[str, Any]:
    """Fit the 8x8 classifier on the pooled training split; report held-out accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    (xtr, ytr), (xte, yte) = reference("train"), reference("test")
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(xtr), ytr)
    return {"format": FORMAT, "C": c, "train_accuracy": float(clf.score(scaler.transform(xtr), ytr)),
            "test_accuracy": float(clf.score(scaler.transform(xte), yte)),
            "data": "pdgan_train.data.DigitsDataset(32, split='train'), uint8-quantised, pooled by pool8",
            "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
            "coef": clf.coef_.tolist(), "intercept": clf.intercept_.tolist()}


@lru_cache(maxsize=1)
def load_classifier(path: str | None = None) -> Classifier8x8:
    file = Path(path) if path else CLASSIFIER_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing; recreate it with: python -m pdgan_train.digits_metrics --fit")
    return Classifier8x8(json.loads(file.read_text()))


# --- the metrics ---------------------------------------------------------------------------------
def class_scores(pooled: np.ndarray, clf: Classifier8x8 | None = None) -> dict[str, Any]:
    probs = (clf or load_classifier()).probs(pooled)
    shares = np.bincount(probs.argmax(1), minlength=10) / len(probs)
    return {"class_shares": [round(float(s), 4) for s in shares], "min_class_share": float(shares.min()),
            "max_class_share": float(shares.max()), "confidence_8x8": float(probs.max(1).mean())}


def nearest_distance(queries: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Euclidean distance of each query to its nearest row of `base` (exact, blocked)."""
    b = torch.from_numpy(base)
    return torch.cat([torch.cdist(torch.from_numpy(queries[i:i + 1024]), b).min(1).values
                      for i in range(0, len(queries), 1024)]).numpy()


def realism_ratio(pooled: np.ndarray) -> dict[str, float]:
    train, test = reference("train")[0], reference("test")[0]
    fake, real = float(np.median(nearest_distance(pooled, train))), float(np.median(nearest_distance(test, train)))
    return {"realism_ratio": fake / real, "nn_distance_median": fake, "nn_distance_heldout_median": real}


def precision_recall_8x8(pooled: np.ndarray, k: int = 3) -> dict[str, float]:
    pr = precision_recall(reference("test")[0], pooled, k=k)
    return {"precision_8x8": pr["precision"], "recall_8x8": pr["recall"]}


def sample_scores(pooled: np.ndarray) -> dict[str, Any]:
    """classes + realism + pr of pooled samples."""
    return {**class_scores(pooled), **realism_ratio(pooled), **precision_recall_8x8(pooled)}


def heldout_images(resolution: int = 32, channels: int = 3) -> tuple[torch.Tensor, np.ndarray]:
    """The held-out digits as one float batch in [-1, 1], and their labels."""
    return _images("test", resolution, channels)


def recon_accuracy(reconstruct: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 128,
                   images: tuple[torch.Tensor, np.ndarray] | None = None) -> dict[str, float]:
    """Share of held-out digits whose reconstruction (`reconstruct`: images in [-1, 1] -> images) the
    8x8 classifier labels as the digit."""
    x, y = images if images is not None else heldout_images()
    pooled = np.concatenate([pool8(reconstruct(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])
    return {"recon_accuracy": float((load_classifier().probs(pooled).argmax(1) == y).mean())}


def probe_accuracy(encode: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 256,
                   resolution: int = 32, channels: int = 3) -> dict[str, float]:
    """Logistic regression from codes of the training split to labels, accuracy on the held-out split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def codes(split: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = _images(split, resolution, channels)
        with torch.no_grad():
            z = torch.cat([encode(x[i:i + batch_size]).float().cpu() for i in range(0, len(x), batch_size)])
        return z.double().numpy(), y

    (ztr, ytr), (zte, yte) = codes("train"), codes("test")
    scaler = StandardScaler().fit(ztr)
    clf = LogisticRegression(max_iter=5000).fit(scaler.transform(ztr), ytr)
    return {"probe_accuracy": float(clf.score(scaler.transform(zte), yte))}


# --- a whole model -------------------------------------------------------------------------------
def _cnn_fid(images_uint8: np.ndarray) -> float:
    """digits-FID: Frechet distance of the shipped 32x32 CNN's features, samples vs all 1797 digits."""
    from .digits_classifier import load_digits_classifier
    from .metrics import fid_from_features

    clf = load_digits_classifier()
    real = _images("all", 32, 1)[0]
    fake = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float().mean(1, keepdim=True) / 127.5 - 1.0
    with torch.no_grad():
        fr, ff = (torch.cat([clf.features(v[i:i + 512]) for i in range(0, len(v), 512)]).numpy() for v in (real, fake))
    return fid_from_features(fr, ff)


@torch.no_grad()
def evaluate_model(model, n: int = 1000, seed: int = 0, batch_size: int = 100, z_T: str = "latent",
                   device: torch.device | str = "cpu", progress: bool | None = None,
                   desc: str = "digits evaluation") -> dict[str, Any]:
    """Every digits metric of a `pdgan_infer.PDGAN`: n samples (image i from seed `seed * 2**16 + i`, the
    rule of `Engine.generate(n, seed)`), held-out reconstructions and the held-out probe. `progress` and
    `desc`: the phase's `pdgan_infer.progress.Progress` (counted in samples; it ends after the scores).

    z_T: "latent" (the latent denoiser, as `Engine.generate`) or "gaussian" (a Gaussian fitted to the
    training split's codes: the sampling used during training, before the latent denoiser exists)."""
    from pdgan_infer.progress import Progress
    from pdgan_infer.sampler import images_from_seeds, to_uint8
    from pdgan_infer.seeds import image_seeds

    cfg, slot = model.config, model.latent_slot
    ch, res = cfg.channels, cfg.resolution
    encode = (lambda x: model.encoder(x.to(device))) if slot != "none" else None
    with Progress(n, desc, "img", progress) as bar:  # updated between the scores too (a line when one is due)
        if z_T == "gaussian" and slot != "none":
            x_train, _ = _images("train", res, ch)
            codes = torch.cat([encode(x_train[i:i + 256]).float() for i in range(0, len(x_train), 256)])
            mu, sd = codes.mean(0), codes.std(0)
            draw = lambda start: mu + sd * start  # noqa: E731
        elif z_T == "latent" or slot == "none":
            if not model.can_draw_z_T:
                raise ValueError("the model has no latent denoiser: evaluate with z_T='gaussian'")
            draw = model.draw_z_T
        else:
            raise ValueError(f"z_T must be 'latent' or 'gaussian', got {z_T!r}")
        images = []
        for start in range(0, n, batch_size):
            seeds = image_seeds(seed, start, min(batch_size, n - start))
            images.append(to_uint8(images_from_seeds(model, seeds, draw_z_T=draw, device=device)).cpu().numpy())
            bar.update(len(seeds))
        samples = np.concatenate(images)
        out: dict[str, Any] = {"n": n, "seed": seed, "z_T": z_T, **sample_scores(pool8(samples))}
        bar.update(0, scoring="digits_fid")
        out["digits_fid"] = _cnn_fid(samples)
        if encode is not None:
            bar.update(0, scoring="reconstructions")
            out.update(recon_accuracy(lambda x: reconstruct(model, x, device), images=heldout_images(res, ch)))
            bar.update(0, scoring="probe")
            out.update(probe_accuracy(encode, resolution=res, channels=ch))
    out["targets_met"] = check_targets(out)
    return out


@torch.no_grad()
def reconstruct(model, x: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 2-step reconstruction of the batch x from z_T = SE(x); row i uses seed i, as
    `Engine.generate_from(engine.encode(x), seed=0)` does."""
    from pdgan_infer.sampler import images_from_seeds

    return images_from_seeds(model, range(len(x)), model.encoder(x.to(device)), device=device)


def _images(split: str, resolution: int, channels: int) -> tuple[torch.Tensor, np.ndarray]:
    from .data import DigitsDataset

    ds = DigitsDataset(resolution, channels, split=split)
    return ds.images.clone(), ds.labels.copy()


# --- targets (issue 11) ----------------------------------------------------------------------------
TARGETS = {"min_class_share": (">=", 0.05), "max_class_share": ("<=", 0.15), "confidence_8x8": (">=", 0.8),
           "realism_ratio": ("<=", 1.15), "recon_accuracy": (">=", 0.90), "probe_accuracy": (">=", 0.95),
           "digits_fid": ("<=", 60.0)}


def check_targets(result: dict[str, Any]) -> dict[str, bool]:
    """{metric: met} for every target metric present in `result`."""
    ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}
    return {k: bool(ops[op](result[k], v)) for k, (op, v) in TARGETS.items() if k in result}


def format_report(r: dict[str, Any]) -> str:
    """A few lines for a terminal: every metric with its target and whether it is met."""
    met = r.get("targets_met") or check_targets(r)

    def mark(key: str) -> str:
        return "" if key not in met else (f"  [target {TARGETS[key][0]} {TARGETS[key][1]}: "
                                          f"{'met' if met[key] else 'MISSED'}]")
    lines = [f"digits metrics of {r['n']} samples (seed {r['seed']}, z_T from the {r['z_T']} sampler), "
             "judged at the digits' native 8x8 against the held-out split:",
             f"  class shares (8x8 classifier) {' '.join(f'{s:.0%}' for s in r['class_shares'])}: "
             f"min {r['min_class_share']:.1%}{mark('min_class_share')}, max {r['max_class_share']:.1%}"
             f"{mark('max_class_share')}",
             f"  mean confidence {r['confidence_8x8']:.3f}{mark('confidence_8x8')}",
             f"  realism ratio {r['realism_ratio']:.3f}{mark('realism_ratio')} "
             f"(1 = as close to the training digits as held-out real digits; noise ~3.7)",
             f"  precision / recall (k=3) vs held-out {r['precision_8x8']:.3f} / {r['recall_8x8']:.3f}",
             f"  digits-FID (32x32 CNN features) {r['digits_fid']:.1f}{mark('digits_fid')}"]
    if "recon_accuracy" in r:
        lines += [f"  held-out reconstructions keep their digit {r['recon_accuracy']:.1%}{mark('recon_accuracy')}",
                  f"  linear probe of SE(x0), held-out {r['probe_accuracy']:.1%}{mark('probe_accuracy')}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pdgan_train.digits_metrics", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fit", action="store_true", help=f"refit the 8x8 classifier and write {CLASSIFIER_FILE.name}")
    p.add_argument("--c", type=float, default=LOGREG_C, help="inverse L2 strength of the logistic regression")
    args = p.parse_args(argv)
    if not args.fit:
        p.print_help()
        return 0
    params = fit_classifier(args.c)
    CLASSIFIER_FILE.write_text(json.dumps(params) + "\n")
    print(f"wrote {CLASSIFIER_FILE}: train {params['train_accuracy']:.4f}, held-out {params['test_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
