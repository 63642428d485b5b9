"""pdgan-eval: sample quality and latent-space quality of a checkpoint (paper Sec. 5, Fig. 3), and sample
quality of any set of images.

    pdgan-eval MODEL --data SPEC [--n N] [--metrics fid,is,pr,digits,probe,interp] [--batch-size B]
               [--backend B] [--save-samples DIR] [--json PATH] [--save-ref X.npz] [--fid-ref X.npz|URL]
    pdgan-eval --images DIR|NPZ [--data SPEC | --fid-ref X.npz|URL | --images2 DIR|NPZ] [--metrics fid,is,pr]
    pdgan-eval --data SPEC --save-ref X.npz

MODEL: a bundled name, a checkpoint file, a model folder or a Hub id (`Engine.from_pretrained`).
Samples are generated as the paper does for unconditional generation, by an `Engine` (`--backend`): z_T
from the latent denoiser (DDIM), then the T-step chain; image i uses the per-image seed
`seed * 2**16 + i`, the rule of `Engine.generate(n, seed)` and `pdgan-generate` (`pdgan_infer.seeds`), in
the batches pdgan-generate makes, so `--save-samples` writes the files `pdgan-generate --seeds 0-(N-1)`
writes (seed 0) and `--images` on those files gives the same numbers. Features are computed batch by batch
as samples are made; under torchrun each process takes its share of the batches
(`pdgan_infer.distributed`) and rank 0 computes the metrics. `--images` (a folder or an .npz,
`image_sets.py`) replaces the model for fid, is and pr; `--images2` replaces --data as their reference.

FID protocol: the Inception-v3 of StyleGAN2-ADA / EDM (`inception-2015-12-05.pt`, the TF FID graph as
TorchScript, 2048 pool features), samples quantised to uint8 first, unbiased covariances, against the
training set; N = 50,000 samples by default, as published numbers (fewer gives a biased FID and a
warning). `--save-ref X.npz` writes the data set's statistics as `mu`, `sigma` (the format of EDM's
`fid.py ref` and pytorch-fid's `--save-stats`, plus `n`, `detector_sha256`, `data`); `--fid-ref` takes
such a file or URL instead of computing them (`references.py`). Which tools' numbers compare:
docs/evaluation.md.

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdgan_infer import load_checkpoint
from pdgan_infer.deprecation import moved
from pdgan_infer.device import resolve_device
from pdgan_infer.distributed import gather, process_group, shard
from pdgan_infer.generate import batch_images, png_name, seed_batches
from pdgan_infer.hub import resolve_model
from pdgan_infer.images import make_grid, save_png
from pdgan_infer.progress import track
from pdgan_infer.sampler import SamplerNoise, noise_for, sample, to_uint8
from pdgan_infer.seeds import SEED_STRIDE, check_seed_block, image_seeds

from . import feature_nets
from ._download import cache_dir as default_cache_dir
from .data import build_dataset, dataset_labels
from .image_sets import MAX_IMAGES, MAX_SIDE, open_image_set
from .metrics import (
    feature_stats,
    fid_from_features,
    frechet_distance,
    inception_score,
    load_or_compute_stats,
    precision_recall,
    stats_key,
)
from .references import EvalError, load_ref, resolve_ref, write_ref

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
MODEL_GROUPS = ("digits", "probe", "interp")  # the groups that need the model itself (and the data set)
# Upper bounds of the counts (a typo such as --interp-pairs 1000000000 is refused, not run for days):
MAX_N = 1 << 20  # samples (their Inception features alone are 8 GiB); at most this many real images too
MAX_BATCH = 1 << 12  # images per batch
MAX_K = 1000  # precision/recall neighbourhood
MAX_INTERP = 4096  # interpolation pairs, and frames per pair (one pair's frames are one batch)
log = logging.getLogger("pdgan")
NO_LATENT = ("the checkpoint has no latent denoiser, so z_T cannot be sampled for unconditional generation; "
             "train its latent stage (pdgan-train --latent-steps N) or evaluate only --metrics probe,interp")


# --- image batches: uint8 (B, H, W, 3) per "job", shared out over torchrun processes -----------------
def uint8_to_unit(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def features(jobs: Sequence[Any], read: Callable[[Any], np.ndarray], extractors: dict[str, Callable], *,
             desc: str, progress: bool = True, rank: int = 0, world: int = 1,
             on_batch: Callable[[Any, np.ndarray], None] | None = None) -> dict[str, np.ndarray]:
    """{name: (N, D) float32} of every extractor over the images `read(job)` of all `jobs`, in job order.
    Under torchrun each process reads its share of the jobs (`pdgan_infer.distributed.shard`) and every
    process gets all the features, so they are those one process computes. `on_batch(job, images)`
    sees each batch (writing samples)."""
    mine = {}
    for i in track(shard(range(len(jobs)), rank, world), desc, "batch", progress and rank == 0):
        images = read(jobs[i])
        if on_batch is not None:
            on_batch(jobs[i], images)
        mine[i] = {name: np.asarray(fn(images), dtype=np.float32) for name, fn in extractors.items()}
    parts = {i: f for part in gather(mine, world) for i, f in part.items()}
    return {name: np.concatenate([parts[i][name] for i in range(len(jobs))]) for name in extractors} if jobs else {}


def _dataset_reader(dataset) -> Callable[[np.ndarray], np.ndarray]:
    """job (dataset indices) -> those images as uint8, quantised like the samples."""
    return lambda idx: to_uint8(torch.stack([dataset[int(i)][0] for i in idx])).numpy()


def _ranges(n: int, batch_size: int) -> list[tuple[int, int]]:
    return [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


# --- feature extractors: uint8 NHWC batch -> (B, D) float array ------------------------------------
def _digits_extractors(clf, device) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    @torch.no_grad()
    def feats(images):
        return clf.features(uint8_to_unit(images, device)).cpu().numpy()

    @torch.no_grad()
    def probs(images):
        return torch.softmax(clf.logits(uint8_to_unit(images, device)), 1).cpu().numpy()

    return {"digits_feats": feats, "digits_probs": probs}


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


def evaluate(checkpoint: str | os.PathLike | None = None, data: str | None = None, n: int | None = None,
             metrics: str | list[str] = "auto", *, images: str | os.PathLike | None = None,
             images2: str | os.PathLike | None = None, backend: str = "auto", batch_size: int | None = None,
             seed: int = 0, n_real: int | None = None, save_samples: str | os.PathLike | None = None,
             device: str | torch.device = "auto", inception: str | os.PathLike | None = None,
             vgg16: str | os.PathLike | None = None, download: bool = False, verify_nets: bool = True,
             cache_dir: str | os.PathLike | None = None, use_cache: bool = True, k: int = 3, is_splits: int = 10,
             probe_max: int = 5000, interp_pairs: int = 16, interp_steps: int = 10, progress: bool = True,
             fid_ref: str | os.PathLike | None = None, save_ref: str | os.PathLike | None = None,
             resolution: int | None = None) -> dict[str, Any] | None:
    """Evaluate a model (bundled name, checkpoint file, folder or Hub id; `n` samples, default FID_N) or
    score the image set `images` (its first `n` images, default all); returns a JSON-ready dict with the
    keys of every requested group (module docstring), `skipped` (group -> reason) and `meta`, or None in
    the processes other than rank 0 under torchrun. `fid_ref` (path or URL) / `images2`: the FID
    reference instead of `data`'s statistics; `save_ref`: write `data`'s statistics there (no model
    needed). Raises EvalError (or CheckpointError / FeatureNetError / ImageSetError, all PDGANError) with
    a one-line reason when it cannot run as asked."""
    t0 = time.time()
    _check_args(k=(k, 1, MAX_K), is_splits=(is_splits, 1, MAX_N), probe_max=(probe_max, 10, MAX_N),
                interp_pairs=(interp_pairs, 1, MAX_INTERP), interp_steps=(interp_steps, 3, MAX_INTERP))
    _check_args(**{name: (v, low, high) for name, v, low, high in (
        ("n", n, 1, MAX_N if images is None else MAX_IMAGES), ("batch_size", batch_size, 1, MAX_BATCH),
        ("n_real", n_real, 2, MAX_N), ("resolution", resolution, 1, MAX_SIDE)) if v is not None})
    if checkpoint is not None and images is not None:
        raise EvalError("give a MODEL to sample or --images to score, not both")
    if fid_ref is not None and images2 is not None:
        raise EvalError("--fid-ref and --images2 are both FID references; give one")
    groups, auto = parse_metrics(metrics, data == "digits")
    fake_set = None if images is None else open_image_set(images, "--images")
    real_set = None if images2 is None else open_image_set(images2, "--images2")
    if fake_set is not None and n is not None and n > fake_set.count:
        raise EvalError(f"--n {n}, but --images {images} holds {fake_set.count} images")
    n = (fake_set.count if fake_set is not None else FID_N) if n is None else n
    if checkpoint is not None:
        _check_seed(seed, n)
    else:
        groups = _without_model(groups, auto, fake_set is not None, save_ref is not None)
    if save_ref is not None and data is None:
        raise EvalError("--save-ref needs --data SPEC: the data set whose statistics to write")
    skipped: dict[str, str] = {}
    if data is None:
        need = [g for g in groups if g in MODEL_GROUPS or (g == "pr" and real_set is None)
                or (g == "fid" and fid_ref is None and real_set is None)]
        if need and not auto:
            raise EvalError(f"{', '.join(need)} need --data SPEC (without it: fid against --fid-ref or --images2, "
                            "is, and pr against --images2)")
        if len(need) == len(groups):
            raise EvalError("--data SPEC is required (without it only FID against --fid-ref / --images2 and IS run)")
        skipped.update({g: "needs --data SPEC" for g in need})
    if "fid" in groups and "fid" not in skipped and n < FID_N:
        log.warning(f"warning: FID from {n} samples is biased upwards and not comparable with published numbers, "
                    f"which use {FID_N:,} (--n {FID_N})")
    if "pr" in groups and "pr" not in skipped and (n <= k or (n_real is not None and n_real <= k)):
        raise EvalError(f"precision/recall with k={k} need more than {k} samples and real images")
    device = resolve_device(device)
    model = None if checkpoint is None else load_checkpoint(resolve_model(checkpoint), device=device)
    sampling = {"fid", "is", "pr", "digits"}
    if model is not None and not model.can_draw_z_T and (sampling & set(groups) or save_samples is not None):
        if not auto or save_samples is not None:
            raise EvalError(NO_LATENT)
        skipped.update({g: "the checkpoint has no latent denoiser (cannot sample z_T)"
                        for g in groups if g in sampling})
    if model is not None and model.latent_slot == "none":  # DDGAN: an encoder never trained, nothing to probe
        skipped.update({g: "the model was trained without a semantic encoder (latent_slot 'none')"
                        for g in groups if g in ("probe", "interp")})
    result: dict[str, Any] = {key: None for g in groups for key in GROUP_KEYS[g]}
    groups = [g for g in groups if g not in skipped]
    if model is not None:
        res, channels = model.config.resolution, model.config.channels
    else:
        shown = fake_set or real_set
        res, channels = resolution or (shown.shape[0] if shown is not None else _data_resolution(data)), 3
    with process_group(device) as (rank, world):
        wanted = groups + (["fid"] if save_ref is not None and "fid" not in groups else [])
        nets, missing = _load_nets(wanted, auto and save_ref is None, {"inception": inception, "vgg16": vgg16},
                                   cache_dir, download, verify_nets, device, progress)
        skipped.update({g: why for g, why in missing.items() if g in groups})
        groups = [g for g in groups if g not in skipped]
        inc, vgg = nets.get("inception"), nets.get("vgg16")
        ref = None
        if fid_ref is not None and rank == 0 and "fid" in groups:
            ref = load_ref(resolve_ref(fid_ref, cache_dir, progress))
            if ref.get("detector_sha256") not in (None, inc.sha256):
                raise EvalError(f"--fid-ref {fid_ref} was made with the Inception file of sha256 "
                                f"{ref['detector_sha256'][:12]}..., this run's has {inc.sha256[:12]}...; FID needs "
                                "the same detector (--inception FILE, or a reference made with this one)")
        clf = None
        if "digits" in groups or ("interp" in groups and data == "digits"):
            from .digits_classifier import load_digits_classifier

            clf = load_digits_classifier(device=device)

        # The scored images: sampled through the Engine (or read from --images), features batch by batch.
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
        share = dict(progress=progress, rank=rank, world=world)
        fake: dict[str, np.ndarray] = {}
        engine = None
        if model is not None and (sampling & set(groups) or save_samples is not None):
            from pdgan_infer.engine import Engine

            engine = Engine(model, backend, device, batch_size=batch_size)
            bs = max(1, min(engine.batch_size, n))
            fake = features(seed_batches(image_seeds(seed, 0, n), bs), lambda b: batch_images(engine, b, bs),
                            extractors, desc="generate", **share,
                            on_batch=None if save_samples is None else _png_writer(Path(save_samples)))
        elif fake_set is not None and extractors:
            fake = features(_ranges(n, batch_size or 64), lambda job: fake_set.read(*job), extractors,
                            desc="--images", **share)
        real2: dict[str, np.ndarray] = {}
        if real_set is not None:
            wanted_real = {name: fn for name, fn in extractors.items() if name in ("inception", "vgg16")}
            real2 = features(_ranges(real_set.count, batch_size or 64), lambda job: real_set.read(*job), wanted_real,
                             desc="--images2", **share)
        if rank != 0:
            return None

        # Real images: the training set (as the paper), or a fixed random subset of n_real of it.
        dataset = None if data is None else build_dataset(data, res, channels)
        total = 0 if dataset is None else len(dataset)
        real_idx = np.arange(total) if n_real is None or n_real >= total else \
            np.sort(np.random.default_rng(0).permutation(total)[:n_real])
        cache = default_cache_dir(cache_dir) if use_cache else None
        real_bs = batch_size or 64

        def real_features(name: str, fn: Callable) -> np.ndarray:
            jobs = [real_idx[i:i + real_bs] for i in range(0, len(real_idx), real_bs)]
            return features(jobs, _dataset_reader(dataset), {name: fn}, desc=f"dataset {name}", progress=progress)[name]

        def cache_key(net) -> str:
            return stats_key(data=_data_key(data), items=int(total), n_real=int(len(real_idx)), resolution=res,
                             channels=channels, net=net.spec.name, net_sha256=net.sha256)

        label = f"{Path(str(data)).name}-{res}"

        def data_stats() -> dict[str, np.ndarray]:
            return load_or_compute_stats(cache_key(inc), lambda: real_features("inception", inc.features), cache,
                                         label=f"{label}-inception")

        if save_ref is not None:
            stats = data_stats()
            write_ref(save_ref, stats["mu"], stats["sigma"], n=int(len(real_idx)), detector_sha256=inc.sha256,
                      data=_data_key(data))
            log.info(f"wrote the Inception statistics of {data} ({len(real_idx)} images) to {save_ref}")
        if "fid" in groups:
            if ref is not None:
                stats = ref
            elif real_set is not None:
                stats = dict(zip(("mu", "sigma"), feature_stats(real2["inception"])))
            else:
                stats = data_stats()
            mu, sigma = feature_stats(fake["inception"])
            if stats["mu"].shape != mu.shape:
                raise EvalError(f"--fid-ref {fid_ref} has {stats['mu'].shape[0]}-dimensional statistics, the "
                                f"Inception network gives {mu.shape[0]} features: the reference was made with another "
                                "network")
            result["fid"] = frechet_distance(stats["mu"], stats["sigma"], mu, sigma)
        if "is" in groups:
            result["is_mean"], result["is_std"] = inception_score(fake["inception_probs"], min(is_splits, n))
        if "pr" in groups:  # features in float16, as StyleGAN2-ADA's precision/recall
            if real_set is not None:
                real_vgg = real2["vgg16"].astype(np.float16)
            else:
                real_vgg = load_or_compute_stats(
                    cache_key(vgg), lambda: real_features("vgg16", vgg.features).astype(np.float16), cache,
                    label=f"{label}-vgg16", keep_features=True)["features"]
            result.update(precision_recall(real_vgg.astype(np.float32),
                                           fake["vgg16"].astype(np.float16).astype(np.float32), k=k))
        if "digits" in groups:
            real = real_features("digits_feats", _digits_extractors(clf, device)["digits_feats"])
            result.update(digits_scores(fake["digits_feats"], fake["digits_probs"], real))
            from . import digits_metrics

            result.update(digits_metrics.sample_scores(fake["digits_pooled"].astype(np.float64)))
            if model.latent_slot != "none":
                result.update(digits_metrics.recon_accuracy(lambda x: digits_metrics.reconstruct(model, x, device),
                                                            images=digits_metrics.heldout_images(res, channels)))
        if "probe" in groups and data == "digits":
            from .digits_metrics import probe_accuracy

            result.update(probe_accuracy(lambda x: model.encoder(x.to(device)), resolution=res, channels=channels))
            from .data import digits_split_indices

            result["probe"] = {"n_train": len(digits_split_indices("train")),
                               "n_test": len(digits_split_indices("test")),
                               "split": "fitted on the digits training split, scored on the held-out split"}
        elif "probe" in groups:
            try:
                result["probe_accuracy"], result["probe"] = linear_probe(model, dataset, dataset_labels(dataset),
                                                                         probe_max, real_bs, device)
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
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "preset": None if model is None else model.config.preset,
        "images": None if images is None else str(images), "images2": None if images2 is None else str(images2),
        "backend": None if engine is None else engine.backend, "processes": world, "data": data, "n": n,
        "n_real": int(len(real_idx)), "resolution": res, "seed": seed if model is not None else None,
        "image_seeds": f"seed * {SEED_STRIDE} + i" if model is not None else None,
        "fid_ref": None if fid_ref is None else str(fid_ref), "metrics": groups, "k": k, "device": str(device),
        "seconds": round(time.time() - t0, 1),
        "feature_nets": {name: {"path": str(net.path), "sha256": net.sha256} for name, net in nets.items()},
    }
    return result


def _without_model(groups: list[str], auto: bool, has_images: bool, save_ref: bool) -> list[str]:
    """The groups that run without a MODEL: fid, is, pr on --images; none for --save-ref alone."""
    no_model = [g for g in groups if g in MODEL_GROUPS]
    if no_model and not auto:
        raise EvalError(f"{', '.join(no_model)} need a MODEL (its generator and encoder); --images is scored with "
                        "fid, is and pr")
    if has_images:
        return [g for g in groups if g not in MODEL_GROUPS]
    if not save_ref:
        raise EvalError("nothing to evaluate: give a MODEL to sample, --images DIR|NPZ to score, or --data SPEC "
                        "--save-ref X.npz to write reference statistics")
    if groups and not auto:
        raise EvalError("--save-ref without a MODEL or --images writes statistics only; leave out --metrics")
    return []


def _data_resolution(data: str) -> int:
    """The resolution --data is read at without a MODEL or images: 32 for the digits (pdgan's digits
    preset) and CIFAR-10, the shorter side of the first image of an image folder."""
    from .data import _find_cifar_dir, _list_images, _open_image

    path = Path(data).expanduser()
    if data == "digits" or not path.is_dir() or _find_cifar_dir(path) is not None:
        return 32  # (a path that is no data set: build_dataset says so)
    files = _list_images(path)
    return min(_open_image(str(files[0]), header_only=True)) if files else 32


def _png_writer(folder: Path) -> Callable[[list[int], np.ndarray], None]:
    """Saves a batch's images as FOLDER/{per-image seed:06d}.png (lossless), the names of pdgan-generate."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(seeds: list[int], images: np.ndarray) -> None:
        for s, img in zip(seeds, images):
            save_png(img, folder / png_name(s))

    return write


def _check_seed(seed: int, n: int) -> None:
    try:
        check_seed_block(seed, n)
    except (TypeError, ValueError) as e:
        raise EvalError(str(e)) from None


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
    if len(dataset) < 2:
        raise EvalError("interpolation needs at least two dataset images")
    rng = np.random.default_rng(seed)
    picks = [rng.choice(len(dataset), size=2, replace=False) for _ in range(pairs)]
    alphas = torch.linspace(0, 1, steps, device=device)[:, None]
    means, variances, frames_all, degenerate = [], [], [], 0
    for p, (a, b) in enumerate(track(picks, "interpolate", "pair", progress)):
        x = torch.stack([dataset[int(a)][0], dataset[int(b)][0]]).to(device)
        z_a, z_b = model.encoder(x)
        base = noise_for(model, image_seeds(seed, p, 1), device=device)  # pair p: the noises of sample p
        noise = SamplerNoise(base.x_T.expand(steps, -1, -1, -1), base.z_T_noise.expand(steps, -1),
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
