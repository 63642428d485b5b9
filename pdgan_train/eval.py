"""pdgan-eval: sample quality and latent-space quality of a checkpoint (paper Sec. 5, Fig. 3).

    pdgan-eval MODEL --data SPEC [--n N] [--metrics fid,is,pr,digits,probe,interp] [--batch-size B]
               [--save-samples DIR] [--json PATH] [--save-ref X.npz] [--fid-ref X.npz]

MODEL: a bundled name, a checkpoint file, a model folder or a Hub id (`Engine.from_pretrained`).
Samples are generated as the paper does for unconditional generation: z_T from the latent denoiser
(DDIM), then the T-step chain; image i uses the per-image seed `seed * 2**16 + i`, the rule of
`Engine.generate(n, seed)` and `pdgan-generate` (`pdgan_infer.seeds`), so results do not depend on the
batch size and `--save-samples` writes the files `pdgan-generate --seeds 0-(N-1)` writes (seed 0).
Features are computed batch by batch as samples are made.

FID protocol: the Inception-v3 of StyleGAN2-ADA / EDM (`inception-2015-12-05.pt`, the TF FID graph as
TorchScript, 2048 pool features), samples quantised to uint8 first, unbiased covariances, against the
training set; N = 50,000 samples by default, as published numbers (fewer gives a biased FID and a
warning). `--save-ref X.npz` writes the data set's statistics as `mu`, `sigma` (the format of EDM's
`fid.py ref` and pytorch-fid's `--save-stats`); `--fid-ref X.npz` takes such a file instead of
computing them (EDM's reference files use the same network, so the numbers are comparable;
pytorch-fid's files come from its own port of the network and differ slightly).

Metric groups (`auto`, the default, picks every group that applies and skips, with the reason in
`result["skipped"]`, those whose networks are missing; a group named explicitly must run):

    fid     FID against the training images, Inception-v3 pool features      -> fid
    is      Inception score (10 splits)                                      -> is_mean, is_std
    pr      improved precision/recall, VGG16 fc2 features, k = 3             -> precision, recall
    digits  (data "digits") on the shipped digits classifier: digits FID vs the 1797 digits; class
            coverage = fraction of the 10 classes among argmax predictions with confidence > 0.5;
            the histogram of those predictions; mean confidence (max softmax probability)
            -> digits_fid, class_coverage, class_histogram, confident_fraction, mean_confidence;
            and the metrics at the digits' native 8x8 that blurred shapes cannot pass
            (`pdgan_train.digits_metrics`): 8x8-classifier class shares and confidence, realism ratio,
            precision/recall against the held-out split, held-out reconstruction accuracy
            -> class_shares, min/max_class_share, confidence_8x8, realism_ratio, precision_8x8,
            recall_8x8, recon_accuracy
    probe   linear probe: SE(x0) of the labelled dataset (at most `probe_max` images, stratified),
            standardised, LogisticRegression on a stratified 80/20 split (seed 0) -> probe_accuracy;
            for the digits: fitted on the training split, scored on the held-out split
    interp  interpolation smoothness (paper Fig. 3, latent space): for K random pairs of dataset images
            the codes SE(x_a), SE(x_b) are lerped in M steps with the pair's x_T / z / eps noises held
            fixed, and each frame generated. With phi the feature map (digits classifier for digits,
            else the VGG16 TorchScript, else raw pixels), d_j = |phi(f_{j+1}) - phi(f_j)| and
            D = |phi(f_{M-1}) - phi(f_0)|, the step ratios are r_j = (M - 1) d_j / D. A path that moves
            at constant speed along a straight line has r_j = 1 for all j. Reported, averaged over
            pairs: interp_mean = mean_j r_j (>= 1; excess = detour) and interp_var = var_j r_j
            (0 = evenly paced; a sudden jump of content makes it large). Lower is smoother.

Inception and VGG16 are the TorchScript files of StyleGAN2-ADA (see `feature_nets.py`); dataset
statistics are cached under `<cache>/stats/` (cache = `pdgan_infer.hub.cache_dir()`). The cache is trusted
input: an entry is matched by its key only, so whoever can write the cache can change the FID; evaluate
with `--no-cache` (nothing read or written) when the cache folder is shared or not yours.
"""
from __future__ import annotations

import logging
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdgan_infer import load_checkpoint
from pdgan_infer.checkpoint import CheckpointError, _regular_file, atomic_path
from pdgan_infer.deprecation import moved
from pdgan_infer.device import resolve_device
from pdgan_infer.errors import PDGANError
from pdgan_infer.hub import resolve_model
from pdgan_infer.images import make_grid, save_png
from pdgan_infer.sampler import SamplerNoise, images_from_seeds, noise_for, sample, to_uint8
from pdgan_infer.seeds import SEED_STRIDE, check_seed_block, image_seeds

from . import feature_nets
from ._download import cache_dir as default_cache_dir
from .metrics import (
    feature_stats,
    fid_from_features,
    frechet_distance,
    inception_score,
    load_or_compute_stats,
    precision_recall,
    stats_key,
)

METRIC_GROUPS = ("fid", "is", "pr", "digits", "probe", "interp")
GROUP_KEYS = {
    "fid": ("fid",), "is": ("is_mean", "is_std"), "pr": ("precision", "recall"),
    "digits": ("digits_fid", "class_coverage", "class_histogram", "confident_fraction", "mean_confidence",
               "class_shares", "min_class_share", "max_class_share", "confidence_8x8", "realism_ratio",
               "precision_8x8", "recall_8x8", "recon_accuracy"),
    "probe": ("probe_accuracy",), "interp": ("interp_mean", "interp_var", "interp_feature_space"),
}
CONFIDENCE = 0.5  # a prediction counts for class coverage when its max probability exceeds this
FID_N = 50_000  # the sample count of published FIDs (the paper: 50k CIFAR-10, 30k CelebA-HQ)
# Upper bounds of the counts (a typo such as --interp-pairs 1000000000 is refused, not run for days):
MAX_N = 1 << 20  # samples (their Inception features alone are 8 GiB); at most this many real images too
MAX_BATCH = 1 << 12  # images per batch
MAX_K = 1000  # precision/recall neighbourhood
MAX_INTERP = 4096  # interpolation pairs, and frames per pair (one pair's frames are one batch)
DATA_GROUPS = ("pr", "digits", "probe", "interp")  # the groups that need the data set itself
log = logging.getLogger("pdgan")
NO_LATENT = ("the checkpoint has no latent denoiser, so z_T cannot be sampled for unconditional generation; "
             "train its latent stage (pdgan-train --latent-steps N) or evaluate only --metrics probe,interp")


class EvalError(PDGANError, ValueError):
    """The evaluation cannot run as asked; the message says why and what to do."""


# --- generation ----------------------------------------------------------------------------------
def generate_batches(model, n: int, seed: int, batch_size: int, device: torch.device,
                     progress: bool = True) -> Iterator[np.ndarray]:
    """Unconditional samples as uint8 (B, H, W, 3) batches: z_T from the latent denoiser, then the
    T-step chain. Image i uses the per-image seed `seed * 2**16 + i` for every noise it draws."""
    from tqdm.auto import tqdm

    if not model.can_draw_z_T:
        raise EvalError(NO_LATENT)
    with tqdm(total=n, desc="generate", unit="img", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            seeds = image_seeds(seed, start, min(batch_size, n - start))
            images = images_from_seeds(model, seeds, device=device)
            bar.update(len(seeds))
            yield to_uint8(images).cpu().numpy()


def dataset_batches(dataset, indices: np.ndarray, batch_size: int, desc: str,
                    progress: bool = True) -> Iterator[np.ndarray]:
    """The dataset's images at `indices` as uint8 (B, H, W, 3) batches (quantised like the samples)."""
    from tqdm.auto import tqdm

    for start in tqdm(range(0, len(indices), batch_size), desc=desc, unit="batch", disable=not progress):
        x = torch.stack([dataset[int(i)][0] for i in indices[start:start + batch_size]])
        yield to_uint8(x).numpy()


def uint8_to_unit(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# --- feature extractors: uint8 NHWC batch -> (B, D) float array ------------------------------------
def _digits_extractors(clf, device) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    @torch.no_grad()
    def feats(images):
        return clf.features(uint8_to_unit(images, device)).cpu().numpy()

    @torch.no_grad()
    def probs(images):
        return torch.softmax(clf.logits(uint8_to_unit(images, device)), 1).cpu().numpy()

    return {"digits_feats": feats, "digits_probs": probs}


def _run(batches: Iterator[np.ndarray], extractors: dict[str, Callable[[np.ndarray], np.ndarray]],
         on_batch: Callable[[int, np.ndarray], None] | None = None) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {k: [] for k in extractors}
    count = 0
    for images in batches:
        if on_batch is not None:
            on_batch(count, images)
        count += len(images)
        for name, fn in extractors.items():
            out[name].append(np.asarray(fn(images), dtype=np.float32))
    return {k: np.concatenate(v) for k, v in out.items() if v}


# --- the evaluation ------------------------------------------------------------------------------
def parse_metrics(metrics_arg: str | list[str] | tuple[str, ...], digits: bool) -> tuple[list[str], bool]:
    names = metrics_arg.split(",") if isinstance(metrics_arg, str) else list(metrics_arg)
    names = [m.strip().lower() for m in names if m.strip()]
    if not names:
        raise EvalError(f"no metrics in {metrics_arg!r}; give 'auto', 'none' or a comma list of "
                        f"{','.join(METRIC_GROUPS)}")
    if names == ["none"]:
        return [], False
    if names == ["auto"]:
        return [m for m in METRIC_GROUPS if m != "digits" or digits], True
    unknown = sorted(set(names) - set(METRIC_GROUPS))
    if unknown:
        raise EvalError(f"unknown metrics {unknown}; choose from {', '.join(METRIC_GROUPS)}, 'auto' or 'none'")
    if "digits" in names and not digits:
        raise EvalError("the digits metrics need --data digits (they use the digits classifier)")
    return [m for m in METRIC_GROUPS if m in names], False


def _data_key(spec: str) -> str:
    return spec if spec == "digits" else str(Path(spec).expanduser().resolve())


def _check_args(**values: tuple[Any, int, int]) -> None:
    for name, (value, low, high) in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise EvalError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def _load_nets(groups: list[str], auto: bool, paths: dict[str, Any], cache_dir, download: bool, verify: bool,
               device: torch.device, progress: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The TorchScript networks the groups need ({"inception": ..., "vgg16": ...}) and the groups
    skipped because one is missing (auto mode; otherwise the FeatureNetError propagates)."""
    loaders = {"inception": feature_nets.load_inception, "vgg16": feature_nets.load_vgg16_ts}
    needs = {"fid": "inception", "is": "inception", "pr": "vgg16"}
    nets: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for group in groups:
        name = needs.get(group)
        if name is None:
            continue
        if name not in nets:
            try:
                nets[name] = loaders[name](paths[name], cache_dir, download, verify, device, progress)
            except feature_nets.FeatureNetError as err:
                if not auto:
                    raise
                nets[name] = err
        if isinstance(nets[name], Exception):
            skipped[group] = str(nets[name])
    return {k: v for k, v in nets.items() if not isinstance(v, Exception)}, skipped


def evaluate(checkpoint: str | os.PathLike, data: str | None = None, n: int = FID_N, metrics: str | list[str] = "auto",
             *, batch_size: int = 64, seed: int = 0, n_real: int | None = None,
             save_samples: str | os.PathLike | None = None, device: str | torch.device = "auto",
             inception: str | os.PathLike | None = None, vgg16: str | os.PathLike | None = None,
             download: bool = False, verify_nets: bool = True, cache_dir: str | os.PathLike | None = None,
             use_cache: bool = True, k: int = 3, is_splits: int = 10, probe_max: int = 5000,
             interp_pairs: int = 16, interp_steps: int = 10, progress: bool = True,
             fid_ref: str | os.PathLike | None = None, save_ref: str | os.PathLike | None = None) -> dict[str, Any]:
    """Evaluate a model (bundled name, checkpoint file, folder or Hub id); returns a JSON-ready dict with
    the keys of every requested group (see the module docstring), `skipped` (group -> reason) and
    `meta`. `fid_ref`: an .npz with `mu`, `sigma` to compute the FID against instead of `data`;
    `save_ref`: write the data set's Inception statistics there. Raises EvalError (or CheckpointError /
    FeatureNetError, all PDGANError) with a one-line reason when it cannot run as asked."""
    from pdgan_train.data import build_dataset, dataset_labels

    t0 = time.time()
    _check_args(n=(n, 1, MAX_N), batch_size=(batch_size, 1, MAX_BATCH), k=(k, 1, MAX_K),
                is_splits=(is_splits, 1, MAX_N), probe_max=(probe_max, 10, MAX_N),
                interp_pairs=(interp_pairs, 1, MAX_INTERP),
                interp_steps=(interp_steps, 3, MAX_INTERP))
    if n_real is not None:
        _check_args(n_real=(n_real, 2, MAX_N))
    _check_seed(seed, n)
    device = resolve_device(device)
    groups, auto = parse_metrics(metrics, data == "digits")
    ref = None if fid_ref is None else load_ref(fid_ref)
    if data is None:
        if save_ref is not None:
            raise EvalError("--save-ref needs --data SPEC: the data set whose statistics to write")
        if ref is None:
            raise EvalError("--data SPEC is required (without it only FID against --fid-ref X.npz and IS can run)")
        without = [g for g in groups if g in DATA_GROUPS]
        if without and not auto:
            raise EvalError(f"{', '.join(without)} need --data SPEC (only fid with --fid-ref, and is, run without)")
        groups = [g for g in groups if g not in DATA_GROUPS]
    if "fid" in groups and n < FID_N:
        log.warning(f"warning: FID from {n} samples is biased upwards and not comparable with published numbers, "
                    f"which use {FID_N:,} (--n {FID_N})")
    if "pr" in groups and (n <= k or (n_real is not None and n_real <= k)):
        raise EvalError(f"precision/recall with k={k} need more than {k} samples and real images")
    model = load_checkpoint(resolve_model(checkpoint), device=device)
    cfg = model.config
    sampling = {"fid", "is", "pr", "digits"}
    skipped: dict[str, str] = {}
    if not model.can_draw_z_T and (sampling & set(groups) or save_samples is not None):
        if not auto or save_samples is not None:
            raise EvalError(NO_LATENT)
        skipped = {g: "the checkpoint has no latent denoiser (cannot sample z_T)" for g in groups if g in sampling}
    if model.latent_slot == "none":  # DDGAN baseline: its encoder was never trained, so there is nothing to probe
        skipped.update({g: "the model was trained without a semantic encoder (latent_slot 'none')"
                        for g in groups if g in ("probe", "interp")})
    result: dict[str, Any] = {key: None for g in groups for key in GROUP_KEYS[g]}
    groups = [g for g in groups if g not in skipped]
    dataset = None if data is None else build_dataset(data, cfg.resolution, cfg.channels)
    wanted = groups + (["fid"] if save_ref is not None and "fid" not in groups else [])
    nets, missing = _load_nets(wanted, auto and save_ref is None, {"inception": inception, "vgg16": vgg16},
                               cache_dir, download, verify_nets, device, progress)
    skipped.update({g: why for g, why in missing.items() if g in groups})
    groups = [g for g in groups if g not in skipped]
    inc, vgg = nets.get("inception"), nets.get("vgg16")
    clf = None
    if "digits" in groups or ("interp" in groups and data == "digits"):
        from .digits_classifier import load_digits_classifier

        clf = load_digits_classifier(device=device)

    # Generated samples: every feature in one streaming pass, PNGs written on the way.
    fake: dict[str, np.ndarray] = {}
    if sampling & set(groups) or save_samples is not None:
        extractors: dict[str, Callable] = {}
        if "fid" in groups:
            extractors["inception"] = inc.features
        if "is" in groups:
            extractors["inception_probs"] = inc.probs
        if "pr" in groups:
            extractors["vgg16"] = vgg.features
        if "digits" in groups:
            from .digits_metrics import pool8
            extractors.update(_digits_extractors(clf, device), digits_pooled=pool8)
        fake = _run(generate_batches(model, n, seed, batch_size, device, progress), extractors,
                    None if save_samples is None else _png_writer(Path(save_samples), seed))

    # Real images: the training set (as the paper), or a fixed random subset of n_real of it.
    total = 0 if dataset is None else len(dataset)
    real_idx = np.arange(total) if n_real is None or n_real >= total else \
        np.sort(np.random.default_rng(0).permutation(total)[:n_real])
    cache = default_cache_dir(cache_dir) if use_cache else None

    def real_features(name: str, fn: Callable) -> np.ndarray:
        return _run(dataset_batches(dataset, real_idx, batch_size, f"dataset {name}", progress), {name: fn})[name]

    def cache_key(net) -> str:
        return stats_key(data=_data_key(data), items=int(total), n_real=int(len(real_idx)), resolution=cfg.resolution,
                         channels=cfg.channels, net=net.spec.name, net_sha256=net.sha256)

    label = f"{Path(str(data)).name}-{cfg.resolution}"

    def data_stats() -> dict[str, np.ndarray]:
        return load_or_compute_stats(cache_key(inc), lambda: real_features("inception", inc.features), cache,
                                     label=f"{label}-inception")

    if save_ref is not None:
        stats = data_stats()
        write_ref(save_ref, stats["mu"], stats["sigma"])
        log.info(f"wrote the Inception statistics of {data} ({len(real_idx)} images) to {save_ref}")
    if "fid" in groups:
        stats = ref if ref is not None else data_stats()
        mu, sigma = feature_stats(fake["inception"])
        if stats["mu"].shape != mu.shape:
            raise EvalError(f"--fid-ref {fid_ref} has {stats['mu'].shape[0]}-dimensional statistics, the Inception "
                            f"network gives {mu.shape[0]} features: the reference was made with another network")
        result["fid"] = frechet_distance(stats["mu"], stats["sigma"], mu, sigma)
    if "is" in groups:
        result["is_mean"], result["is_std"] = inception_score(fake["inception_probs"], min(is_splits, n))
    if "pr" in groups:  # features in float16, as StyleGAN2-ADA's precision/recall
        stats = load_or_compute_stats(cache_key(vgg), lambda: real_features("vgg16", vgg.features).astype(np.float16),
                                      cache, label=f"{label}-vgg16", keep_features=True)
        result.update(precision_recall(stats["features"].astype(np.float32),
                                       fake["vgg16"].astype(np.float16).astype(np.float32), k=k))
    if "digits" in groups:
        real = real_features("digits_feats", _digits_extractors(clf, device)["digits_feats"])
        result.update(digits_scores(fake["digits_feats"], fake["digits_probs"], real))
        from . import digits_metrics

        result.update(digits_metrics.sample_scores(fake["digits_pooled"].astype(np.float64)))
        if model.latent_slot != "none":
            result.update(digits_metrics.recon_accuracy(lambda x: digits_metrics.reconstruct(model, x, device),
                                                        images=digits_metrics.heldout_images(cfg.resolution,
                                                                                             cfg.channels)))
    if "probe" in groups and data == "digits":
        from .digits_metrics import probe_accuracy

        result.update(probe_accuracy(lambda x: model.encoder(x.to(device)), resolution=cfg.resolution,
                                     channels=cfg.channels))
        from .data import digits_split_indices

        result["probe"] = {"n_train": len(digits_split_indices("train")), "n_test": len(digits_split_indices("test")),
                           "split": "fitted on the digits training split, scored on the held-out split"}
    elif "probe" in groups:
        try:
            result["probe_accuracy"], result["probe"] = linear_probe(model, dataset, dataset_labels(dataset),
                                                                     probe_max, batch_size, device)
        except EvalError as err:
            if not auto:
                raise
            skipped["probe"] = str(err)
    if "interp" in groups:
        phi, space = _interp_features(clf, vgg, device)
        grid = None if save_samples is None else Path(save_samples) / "interpolations.png"
        result.update(interpolation_smoothness(model, dataset, phi, interp_pairs, interp_steps, seed, device,
                                               progress, grid), interp_feature_space=space)
        if result["interp_mean"] is None:
            skipped["interp"] = (f"all {interp_pairs} interpolations have identical endpoints in {space} space "
                                 "(the generator ignores z_T), so smoothness is undefined")

    result["skipped"] = skipped
    result["meta"] = {
        "checkpoint": str(checkpoint), "preset": cfg.preset, "data": data, "n": n, "n_real": int(len(real_idx)),
        "seed": seed, "image_seeds": f"seed * {SEED_STRIDE} + i", "fid_ref": None if fid_ref is None else str(fid_ref),
        "metrics": groups, "k": k, "device": str(device), "seconds": round(time.time() - t0, 1),
        "feature_nets": {name: {"path": str(net.path), "sha256": net.sha256} for name, net in nets.items()},
    }
    return result


def _png_writer(folder: Path, seed: int) -> Callable[[int, np.ndarray], None]:
    """Saves batch images as FOLDER/{per-image seed:06d}.png (lossless), the names of pdgan-generate."""
    from pdgan_infer.generate import png_name

    folder.mkdir(parents=True, exist_ok=True)

    def write(start: int, images: np.ndarray) -> None:
        for s, img in zip(image_seeds(seed, start, len(images)), images):
            save_png(img, folder / png_name(s))

    return write


def _check_seed(seed: int, n: int) -> None:
    try:
        check_seed_block(seed, n)
    except (TypeError, ValueError) as e:
        raise EvalError(str(e)) from None


MAX_REF_DIM = 8192  # feature size D of --fid-ref statistics (Inception: 2048); sigma (D, D) float64 <= 512 MiB


def load_ref(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{"mu", "sigma"} of a reference statistics .npz (EDM's `fid.py ref`, pytorch-fid's --save-stats). Each
    member's .npy header (dtype, shape) is read and checked before its data, so a small file declaring a huge
    array is refused without decompressing it."""
    path = Path(path)
    try:
        if not _regular_file(path, "--fid-ref"):
            raise EvalError(f"--fid-ref {path} not found")
        with zipfile.ZipFile(path) as z:
            headers = {info.filename.removesuffix(".npy"): _npy_header(z, info) for info in z.infolist()}
        if not {"mu", "sigma"} <= set(headers):
            raise EvalError(f"{path} has arrays {sorted(headers)}, not 'mu' and 'sigma' (FID reference statistics)")
        (mu_shape, mu_dtype), (sigma_shape, sigma_dtype) = headers["mu"], headers["sigma"]
        if (len(mu_shape) != 1 or sigma_shape != (*mu_shape, *mu_shape) or not 1 <= mu_shape[0] <= MAX_REF_DIM
                or mu_dtype.kind != "f" or sigma_dtype.kind != "f"):
            raise EvalError(f"{path}: expected float arrays mu (D,) and sigma (D, D) with D <= {MAX_REF_DIM}, got "
                            f"{mu_dtype} {mu_shape} and {sigma_dtype} {sigma_shape}")
        with np.load(path, allow_pickle=False) as f:
            mu, sigma = f["mu"].astype(np.float64), f["sigma"].astype(np.float64)
    except CheckpointError as err:  # not a regular file (a FIFO, a folder, a dangling link)
        raise EvalError(str(err)) from None
    except zipfile.BadZipFile:
        raise EvalError(f"--fid-ref {path} is not an .npz file (a zip of mu.npy and sigma.npy, as np.savez "
                        "writes)") from None
    except (OSError, ValueError, EOFError, zipfile.LargeZipFile) as err:
        raise EvalError(f"--fid-ref {path} is not a readable .npz ({type(err).__name__}: {err})") from None
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise EvalError(f"{path}: mu and sigma must hold finite values")
    return {"mu": mu, "sigma": sigma}


def _npy_header(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of one .npy member, without reading its data."""
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"member {info.filename} is an .npy of version {version}, not 1.0 or 2.0")
    return tuple(shape), dtype


def write_ref(path: str | os.PathLike, mu: np.ndarray, sigma: np.ndarray) -> Path:
    """Write reference statistics as an .npz with `mu` and `sigma` (atomic), as EDM and pytorch-fid do."""
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64))
    return path


def digits_scores(fake_feats: np.ndarray, fake_probs: np.ndarray, real_feats: np.ndarray) -> dict[str, Any]:
    """digits FID, class coverage (confident argmax classes / 10), histogram, mean confidence."""
    conf, pred = fake_probs.max(axis=1), fake_probs.argmax(axis=1)
    hist = np.bincount(pred[conf > CONFIDENCE], minlength=fake_probs.shape[1])
    return {"digits_fid": fid_from_features(real_feats, fake_feats),
            "class_coverage": float((hist > 0).mean()), "class_histogram": [int(v) for v in hist],
            "confident_fraction": float((conf > CONFIDENCE).mean()), "mean_confidence": float(conf.mean())}


@torch.no_grad()
def linear_probe(model, dataset, labels: np.ndarray | None, probe_max: int, batch_size: int,
                 device: torch.device) -> tuple[float, dict[str, Any]]:
    """Test accuracy of a logistic regression from SE(x0) to the labels (stratified 80/20, seed 0)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if labels is None or (labels >= 0).sum() < 10:
        raise EvalError("the linear probe needs a labelled dataset (digits, CIFAR-10, or an image folder with "
                        "labels.csv)")
    idx = np.flatnonzero(labels >= 0)
    if len(np.unique(labels[idx])) < 2:
        raise EvalError("the linear probe needs at least two classes")
    counts = np.bincount(labels[idx])
    stratify_ok = counts[counts > 0].min() >= 2
    if len(idx) > probe_max:
        idx, _ = train_test_split(idx, train_size=probe_max, random_state=0,
                                  stratify=labels[idx] if stratify_ok else None)
        idx = np.sort(idx)
    codes = []
    for start in range(0, len(idx), batch_size):
        x = torch.stack([dataset[int(i)][0] for i in idx[start:start + batch_size]]).to(device)
        codes.append(model.encoder(x).float().cpu().numpy())
    z, y = np.concatenate(codes).astype(np.float64), labels[idx]
    counts = np.bincount(y)
    counts = counts[counts > 0]
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0,
                              stratify=y if counts.min() >= 2 else None)
    scaler = StandardScaler().fit(z[tr])
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(z[tr]), y[tr])
    acc = float(clf.score(scaler.transform(z[te]), y[te]))
    return acc, {"n_train": int(len(tr)), "n_test": int(len(te)), "classes": int(len(counts)),
                 "majority_baseline": float(np.bincount(y[te]).max() / len(te))}


def step_ratios(features: np.ndarray) -> np.ndarray | None:
    """r_j = (M - 1) |f_{j+1} - f_j| / |f_{M-1} - f_0| for the (M, D) features of one interpolation;
    None when the endpoints coincide (|f_{M-1} - f_0| ~ 0, nothing to normalise by)."""
    f = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    span = np.linalg.norm(f[-1] - f[0])
    if span <= 1e-8 * max(1.0, float(np.abs(f).max())):
        return None
    return (len(f) - 1) * np.linalg.norm(np.diff(f, axis=0), axis=1) / span


def _interp_features(clf, vgg, device) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    if clf is not None:
        return _digits_extractors(clf, device)["digits_feats"], "digits_classifier"
    if vgg is not None:
        return vgg.features, "vgg16"
    return (lambda images: images.reshape(len(images), -1).astype(np.float32) / 127.5 - 1.0), "pixels"


@torch.no_grad()
def interpolation_smoothness(model, dataset, phi: Callable[[np.ndarray], np.ndarray], pairs: int, steps: int,
                             seed: int, device: torch.device, progress: bool = True,
                             save_grid: Path | None = None) -> dict[str, Any]:
    """interp_mean / interp_var of the step ratios r_j = (M-1) |phi_{j+1} - phi_j| / |phi_{M-1} - phi_0|
    along latent interpolations between SE(x_a) and SE(x_b) (module docstring); pairs whose endpoints
    have the same features (D ~ 0) are left out and counted in interp_degenerate (None when all are)."""
    from tqdm.auto import tqdm

    if len(dataset) < 2:
        raise EvalError("interpolation needs at least two dataset images")
    rng = np.random.default_rng(seed)
    picks = [rng.choice(len(dataset), size=2, replace=False) for _ in range(pairs)]
    alphas = torch.linspace(0, 1, steps, device=device)[:, None]
    means, variances, frames_all, degenerate = [], [], [], 0
    for p, (a, b) in enumerate(tqdm(picks, desc="interpolate", unit="pair", disable=not progress)):
        x = torch.stack([dataset[int(a)][0], dataset[int(b)][0]]).to(device)
        z_a, z_b = model.encoder(x)
        base = noise_for(model, image_seeds(seed, p, 1), device=device)  # pair p: the noises of sample p
        noise = SamplerNoise(base.x_T.expand(steps, -1, -1, -1), base.latent.expand(steps, -1),
                             base.z.expand(-1, steps, -1), base.eps.expand(-1, steps, -1, -1, -1))
        z_T = (1 - alphas) * z_a + alphas * z_b
        frames = to_uint8(sample(model.generator, model.schedule, z_T, noise, model.latent_slot)).cpu().numpy()
        frames_all.append(frames)
        r = step_ratios(phi(frames))
        if r is None:
            degenerate += 1
            continue
        means.append(r.mean())
        variances.append(r.var())
    if save_grid is not None:
        save_png(make_grid(np.concatenate(frames_all), nrow=steps), save_grid)
    return {"interp_mean": float(np.mean(means)) if means else None,
            "interp_var": float(np.mean(variances)) if variances else None,
            "interp_pairs": len(means), "interp_degenerate": degenerate, "interp_steps": steps}


# the command line lives in pdgan_train.cli.eval; `main` and `build_parser` resolve here for one release
__getattr__ = moved(__name__, "pdgan_train.cli.eval", ("main", "build_parser"))

if __name__ == "__main__":  # python -m pdgan_train.eval: the command
    raise SystemExit(__getattr__("main")())
