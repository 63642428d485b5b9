"""Sample-quality metrics on feature arrays (paper Sec. 5: FID, IS, improved recall), and a cache of
dataset statistics. Everything here takes plain arrays; the networks that make the features live in
`feature_nets.py` (Inception-v3, VGG16) and `digits_classifier.py`.

    FID  (Heusel et al. 2017)  |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), Gaussians fitted to
                               two (N, D) feature sets (float64, unbiased covariances as pytorch-fid)
    IS   (Salimans et al. 2016) exp E_x KL(p(y|x) || p(y)), averaged over `splits` chunks
    P/R  (Kynkaanniemi et al. 2019) improved precision/recall: a sample lies on a set's manifold
                               when it is inside the k-NN ball of one of the set's points

`load_or_compute_stats` keeps dataset statistics as `.npz` files (mu, sigma, and the features when
recall needs them) keyed by a hash of what they depend on: dataset spec and size, resolution, the
feature net's sha256. Files are written atomically and read with `allow_pickle=False`.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATS_FORMAT = 1  # bump when the meaning of cached statistics changes


def _scipy(module: str):
    """scipy.<module>, or an ImportError naming the extra that installs it."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("scipy") is None:
        raise ImportError("the metrics need scipy: pip install 'pdgan[train]' (or pip install scipy)")
    return importlib.import_module(f"scipy.{module}")


# --- Frechet distance ------------------------------------------------------------------------------
def _as_features(feats: Any, what: str) -> np.ndarray:
    x = np.asarray(feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else feats, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{what} must be an (N, D) array with N >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or inf")
    return x


def feature_stats(feats: Any) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) in float64 of an (N, D) feature array; sigma is the unbiased
    covariance (N - 1 in the denominator), as pytorch-fid and the TF reference compute it."""
    x = _as_features(feats, "features")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    sqrt(S1 S2) by `scipy.linalg.sqrtm`. As pytorch-fid does: when the product is singular enough that
    the root is not finite, eps * I is added to both covariances; a complex root whose diagonal has
    imaginary parts above 1e-3 is an error (numerically broken statistics), smaller ones are dropped.
    """
    linalg = _scipy("linalg")
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"statistics disagree: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs "
                         f"{sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # singular products are handled below
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        worst = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if worst > 1e-3:
            raise ValueError(f"sqrt(sigma1 @ sigma2) has an imaginary component of {worst:.3g}: the "
                             "covariances are numerically broken (too few samples for the feature dimension?)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(feats1: Any, feats2: Any) -> float:
    """FID between two (N, D) feature arrays (numpy or torch; any N >= 2, same D)."""
    a, b = _as_features(feats1, "feats1"), _as_features(feats2, "feats2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    return frechet_distance(*feature_stats(a), *feature_stats(b))


# --- Inception score -------------------------------------------------------------------------------
def _as_probs(x: Any) -> np.ndarray:
    """Rows that are already distributions are kept; anything else is treated as logits (softmax)."""
    p = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 2:
        raise ValueError(f"expected (N, classes) logits or probabilities, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("logits/probabilities contain NaN or inf")
    if p.min() >= 0 and np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        return p / p.sum(axis=1, keepdims=True)
    e = np.exp(p - p.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def inception_score(logits_or_probs: Any, splits: int = 10) -> tuple[float, float]:
    """(mean, std) over `splits` equal chunks of exp(mean_x KL(p(y|x) || p_chunk(y))).

    Input: (N, classes) probabilities (rows summing to 1, e.g. the Inception TorchScript's softmax
    output) or logits (anything else; softmaxed here). Chunks are `[i*N//splits, (i+1)*N//splits)`
    in order, as in the reference code, so shuffle the samples first if they are sorted by class.
    Uniform predictions give 1; confident one-hot predictions spread evenly over C classes give C.
    """
    rel_entr = _scipy("special").rel_entr
    p = _as_probs(logits_or_probs)
    n = p.shape[0]
    if not isinstance(splits, int) or not 1 <= splits <= n:
        raise ValueError(f"splits must be an int in 1..N={n}, got {splits!r}")
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        kl = rel_entr(part, part.mean(axis=0, keepdims=True)).sum(axis=1).mean()  # 0 log 0 = 0
        scores.append(float(np.exp(kl)))
    return float(np.mean(scores)), float(np.std(scores))


# --- improved precision / recall -----------------------------------------------------------------
def _as_torch_features(x: Any, what: str) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.ndim != 2:
        raise ValueError(f"{what} must be an (N, D) array, got shape {tuple(t.shape)}")
    return t.to(torch.float64 if t.dtype == torch.float64 else torch.float32)


def knn_radii(feats: torch.Tensor, k: int, row_batch: int = 1024, col_batch: int = 8192) -> torch.Tensor:
    """Distance of every row of `feats` to its k-th nearest *other* row, (N,), computed in
    row x column blocks: memory is O(row_batch * (col_batch + k)) whatever N is."""
    n = feats.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k-NN radii need 1 <= k < N, got k={k}, N={n}")
    out = []
    for r0 in range(0, n, row_batch):
        rows = feats[r0:r0 + row_batch]
        best = torch.full((rows.shape[0], 0), float("inf"), dtype=feats.dtype)
        for c0 in range(0, n, col_batch):
            d = torch.cdist(rows, feats[c0:c0 + col_batch])
            best = torch.cat([best, d], 1).topk(min(k + 1, best.shape[1] + d.shape[1]), dim=1, largest=False).values
        out.append(best[:, k])  # the smallest is the row itself (distance 0)
    return torch.cat(out)


def manifold_coverage(manifold: torch.Tensor, radii: torch.Tensor, probes: torch.Tensor,
                      row_batch: int = 1024, col_batch: int = 8192) -> float:
    """Fraction of `probes` inside at least one ball B(manifold_i, radii_i) (distance <= radius)."""
    hits = []
    for r0 in range(0, probes.shape[0], row_batch):
        rows = probes[r0:r0 + row_batch]
        inside = torch.zeros(rows.shape[0], dtype=torch.bool)
        for c0 in range(0, manifold.shape[0], col_batch):
            d = torch.cdist(rows, manifold[c0:c0 + col_batch])
            inside |= (d <= radii[c0:c0 + col_batch]).any(dim=1)
            if bool(inside.all()):
                break
        hits.append(inside)
    return float(torch.cat(hits).double().mean())


def precision_recall(real_feats: Any, fake_feats: Any, k: int = 3, row_batch: int = 1024,
                     col_batch: int = 8192) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019), as StyleGAN2-ADA computes them:

    precision = fraction of fake samples inside the real manifold (union of the balls around each
    real feature with radius = distance to its k-th nearest real neighbour); recall = fraction of
    real samples inside the fake manifold. Pairwise distances are computed in blocks, so 50k x 50k
    sets fit in memory. float64 inputs are kept in float64, everything else runs in float32.
    """
    real, fake = _as_torch_features(real_feats, "real_feats"), _as_torch_features(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    dtype = torch.promote_types(real.dtype, fake.dtype)
    real, fake = real.to(dtype), fake.to(dtype)
    out = {}
    for name, manifold, probes in (("precision", real, fake), ("recall", fake, real)):
        radii = knn_radii(manifold, k, row_batch, col_batch)
        out[name] = manifold_coverage(manifold, radii, probes, row_batch, col_batch)
    return out


# --- dataset statistics cache --------------------------------------------------------------------
def stats_key(**parts: Any) -> str:
    """Canonical JSON of what a cached statistic depends on (sorted keys)."""
    return json.dumps({"stats_format": STATS_FORMAT, **parts}, sort_keys=True, default=str)


def stats_cache_path(cache_dir: str | os.PathLike, key: str, label: str = "stats") -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)[:60]
    return Path(cache_dir) / "stats" / f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def load_or_compute_stats(key: str, compute: Callable[[], np.ndarray], cache_dir: str | os.PathLike | None,
                          label: str = "stats", keep_features: bool = False) -> dict[str, np.ndarray]:
    """{"mu", "sigma"[, "features"]} of the (N, D) array `compute()` returns, cached by `key`.

    With `cache_dir` None nothing is read or written. A cached file whose stored key differs (hash
    collision) or that cannot be read (truncated) is recomputed and replaced. `keep_features` also
    stores the features themselves (needed for precision/recall).
    """
    path = stats_cache_path(cache_dir, key, label) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["key"]) == key and (not keep_features or "features" in f):
                    return {name: f[name] for name in f.files if name != "key"}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            warnings.warn(f"ignoring unreadable statistics cache {path} ({type(err).__name__}); recomputing",
                          stacklevel=2)
    feats = np.asarray(compute())
    mu, sigma = feature_stats(feats)
    out = {"mu": mu, "sigma": sigma}
    if keep_features:
        out["features"] = feats
    if path is not None:
        from pdgan_infer.checkpoint import atomic_path

        with atomic_path(path, suffix=".tmp.npz") as tmp:
            np.savez(tmp, key=np.array(key), **out)
    return out
