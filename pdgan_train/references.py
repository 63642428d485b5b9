"""FID reference statistics files: `mu` (D,) and `sigma` (D, D), the format of EDM's `fid.py ref`,
pytorch-fid's `--save-stats` and ADM's VIRTUAL_*.npz (their extra arrays are ignored).

`write_ref` (pdgan-eval --save-ref) also stores what the statistics depend on as extra arrays, which
every one of those readers ignores: `n` (the number of images), `detector_sha256` (the sha256 of the
Inception file that made the features) and `data` (the data set). `load_ref` reads files with or
without them; when a file names its detector, FID against it needs that same detector.

`resolve_ref` takes a path or a URL (http, https, file). A URL is downloaded once into
`<cache>/fid-refs/` through `pdgan_train._download`; `URL#sha256=<64 hex digits>` checks the bytes
(and names the cached copy), a URL without it is used as first downloaded, with a warning that gives
the digest to pin.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from pdgan_infer.checkpoint import atomic_path
from pdgan_infer.errors import PDGANError

from . import _download
from .image_sets import ImageSetError, npz_arrays

log = logging.getLogger("pdgan")
MAX_DIM = 16_384  # feature width of a reference file (Inception: 2048)
_URL = re.compile(r"(?i)(https?|file)://")
_PIN = re.compile(r"sha256=([0-9a-fA-F]{64})")


class EvalError(PDGANError, ValueError):
    """The evaluation cannot run as asked; the message says why and what to do (pdgan_train.eval raises it too)."""


def is_url(spec: str | os.PathLike | None) -> bool:
    return spec is not None and _URL.match(str(spec)) is not None


def resolve_ref(spec: str | os.PathLike, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The local file of a --fid-ref: `spec` itself, or a URL's cached download (module docstring)."""
    if not is_url(spec):
        return Path(spec).expanduser()
    url, _, fragment = str(spec).partition("#")
    pin = _PIN.fullmatch(fragment) if fragment else None
    if fragment and pin is None:
        raise EvalError(f"--fid-ref {spec}: the part after '#' must be sha256=<64 hex digits>")
    name = re.sub(r"[^A-Za-z0-9._-]", "-", url.rstrip("/").rsplit("/", 1)[-1])[-80:] or "ref.npz"
    folder = _download.cache_dir(cache_dir) / "fid-refs"
    if pin is not None:
        digest = pin.group(1).lower()
        target = folder / f"{digest[:16]}-{name}"
        if target.is_file() and _download.sha256_file(target) == digest:
            return target
        return _download.download_file(url, target, sha256=digest, progress=progress)
    target = folder / f"url-{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"
    if not target.is_file():
        _download.download_file(url, target, progress=progress)
        log.warning(f"warning: downloaded {url} without a digest to check; its sha256 is "
                    f"{_download.sha256_file(target)}: pin it with --fid-ref '{url}#sha256=<that digest>'")
    return target


def load_ref(path: str | os.PathLike) -> dict[str, Any]:
    """{"mu", "sigma"} (float64) of a reference statistics .npz, and "n", "detector_sha256", "data" when
    the file records them (`write_ref`). The headers are checked before any array is read."""
    path = Path(path)
    try:
        arrays = npz_arrays(path)
    except ImageSetError as err:
        raise EvalError(f"--fid-ref {err}") from None
    if not {"mu", "sigma"} <= set(arrays):
        raise EvalError(f"{path} has arrays {sorted(arrays)}, not 'mu' and 'sigma' (FID reference statistics)")
    (mu_shape, mu_dtype, _), (sigma_shape, sigma_dtype, _) = arrays["mu"], arrays["sigma"]
    if (len(mu_shape) != 1 or not 1 <= mu_shape[0] <= MAX_DIM or sigma_shape != (mu_shape[0],) * 2
            or mu_dtype.kind != "f" or sigma_dtype.kind != "f"):
        raise EvalError(f"{path}: expected float mu (D,) and sigma (D, D) with D <= {MAX_DIM}, got {mu_dtype} "
                        f"{mu_shape} and {sigma_dtype} {sigma_shape}")
    with np.load(path, allow_pickle=False) as f:
        out: dict[str, Any] = {"mu": f["mu"].astype(np.float64), "sigma": f["sigma"].astype(np.float64)}
        for key, kinds in (("n", "iu"), ("detector_sha256", "U"), ("data", "U")):
            if key in arrays and arrays[key][0] == () and arrays[key][1].kind in kinds:
                out[key] = f[key].item()
    if not (np.isfinite(out["mu"]).all() and np.isfinite(out["sigma"]).all()):
        raise EvalError(f"{path}: mu or sigma holds NaN or inf")
    return out


def write_ref(path: str | os.PathLike, mu: np.ndarray, sigma: np.ndarray, *, n: int | None = None,
              detector_sha256: str | None = None, data: str | None = None) -> Path:
    """Write reference statistics as an .npz with `mu` and `sigma` (float64) and, when given, the extra
    arrays `n`, `detector_sha256`, `data` (atomic)."""
    path = Path(path)
    extra = {k: np.asarray(v) for k, v in (("n", n), ("detector_sha256", detector_sha256), ("data", data))
             if v is not None}
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64), **extra)
    return path
