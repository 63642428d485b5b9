"""Semantic editing with a PDGAN checkpoint: reconstruction, interpolation (paper Sec. 5.2, Fig. 3),
varying one input at a time (Sec. 5.4, Fig. 5) and attribute manipulation (Diffusion Autoencoders).

The generator chain has four inputs (`pdgan_infer.sampler.sample`): the semantic code z_T (the latent
slot at t = T: SE(x0) for a real image, a latent-denoiser sample for a new one), the latent z of the
refinement steps t < T, the start noise x_T and the posterior noise eps. Every function here fixes
all of them explicitly: noises come from `draw_noise` with one seed per image, so a result depends
on its seeds only, never on the batch it was computed in. A `seed` s means the per-image seeds
s * 2**16 + i of `Engine.generate(n, seed=s)` (`pdgan_infer.seeds`): "the noise of seed s" is that of
image 0 of `Engine.generate(1, seed=s)`, so a frame made from seed s's noises and latent sample is that
image.

    encode(model, images)                          z_T = SE(x0), (N, nz)
    reconstruct(model, images, seed)               SE(x0) with fresh x_T / z / eps: image i uses image i of seed
    interpolate_latent(model, a, b, steps, seed)   lerp of z_T from SE(a) to SE(b); x_T, z, eps of `seed`
    interpolate_pixel(model, sa, sb, steps, z_T)   slerp of x_T from seed sa's to seed sb's; z_T, z, eps fixed
    vary(model, which, n, base_seed)               only one of z_T / z / x_T changes along the row
    fit_attribute(model, images, labels, target)   linear direction of `labels == target` in code space
    manipulate(model, image, direction, strengths) move z_T along it; x_T, z, eps fixed

Images go in as uint8 (N, H, W, C) (as `to_uint8` and the PNG tools give them) or float (N, C, H, W)
in [-1, 1] (as the datasets give them); a single image may omit N. Images come out as uint8
(N, H, W, 3) numpy arrays, ready for `pdgan_infer.images.save_grid`.

CLI (every subcommand writes one PNG grid and prints its path):

    pdgan-edit CKPT reconstruct --data SPEC [--n 8 | --indices I,J,..] --out PATH
    pdgan-edit CKPT interpolate --space latent --data SPEC --pair I J [--pair ..] --steps 8 --out PATH
    pdgan-edit CKPT interpolate --space pixel --pair SEED_A SEED_B [--data SPEC --index K] --out PATH
    pdgan-edit CKPT vary --which z_T|z|x_T --n 8 --rows 4 [--data SPEC] --out PATH
    pdgan-edit CKPT attribute --data SPEC --target LABEL [--labels CSV] --index I --strengths -2,-1,0,1,2 --out PATH
"""
from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pdgan_infer._cli import ascii_int
from pdgan_infer.deprecation import moved
from pdgan_infer.errors import PDGANError
from pdgan_infer.sampler import SamplerNoise, noise_for, sample, to_uint8
from pdgan_infer.seeds import check_seed_block, image_seeds

BATCH = 64  # images per forward pass; results do not depend on it (one seed per image)
MAX_GRID = 4096  # images in one pdgan-edit grid (rows x columns): the grid is built in memory
MAX_STRENGTH = 1000.0  # |strength| and |--scale| in proj_stds (beyond it the codes leave any trained range)
VARY = ("z_T", "z", "x_T")
NO_LATENT = ("the checkpoint has no latent denoiser, so z_T cannot be sampled: give the codes (z_T=encode(model, "
             "images); CLI: --data SPEC) or train the latent stage (pdgan-train --latent-steps N)")


log = logging.getLogger("pdgan")


class EditError(PDGANError, ValueError):
    """The edit cannot be done as asked; the message says why and what to do."""


# --- inputs ------------------------------------------------------------------------------------------
def _device(model) -> torch.device:
    return next(model.parameters()).device


def _noise(model, seeds: Sequence[int]) -> SamplerNoise:
    return noise_for(model, seeds, device=_device(model))


def _seeds(seed: int, n: int = 1) -> list[int]:
    """The per-image seeds of images 0..n-1 of seed `seed` (`Engine.generate(n, seed)`'s)."""
    try:
        return image_seeds(check_seed_block(seed, n), 0, n)  # numpy integers are numbers.Integral
    except (TypeError, ValueError) as e:
        raise EditError(str(e)) from None


def _repeat(noise: SamplerNoise, n: int) -> SamplerNoise:
    """The noise of one image, repeated for n images."""
    return SamplerNoise(noise.x_T.expand(n, -1, -1, -1), noise.z_T_noise.expand(n, -1),
                        noise.z.expand(-1, n, -1), noise.eps.expand(-1, n, -1, -1, -1))


def as_model_input(model, images) -> torch.Tensor:
    """uint8 (N, H, W, C) / float (N, C, H, W) in [-1, 1] (N optional) -> float (N, C, H, W) on the
    model's device. Grey and RGB are converted to the model's channel count (1 <-> 3)."""
    x = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images.detach()
    if x.dtype == torch.uint8:
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise EditError(f"uint8 images must be (N, H, W, C) with C = 1 or 3, got shape {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    elif x.is_floating_point():
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise EditError(f"float images must be (N, C, H, W) in [-1, 1] with C = 1 or 3, got shape "
                            f"{tuple(x.shape)}")
    else:
        raise EditError(f"images must be uint8 (N, H, W, C) or float (N, C, H, W) in [-1, 1], got {x.dtype}")
    cfg = model.config
    if x.shape[-2:] != (cfg.resolution, cfg.resolution):
        raise EditError(f"images are {x.shape[-1]}x{x.shape[-2]} but the model is {cfg.resolution}x"
                        f"{cfg.resolution}; resize them first")
    if x.shape[1] != cfg.channels:
        x = x.mean(1, keepdim=True) if cfg.channels == 1 else x.expand(-1, cfg.channels, -1, -1)
    return x.to(_device(model), torch.float32)


def _as_codes(model, z_T) -> torch.Tensor:
    """A code (nz,) or codes (k, nz), numpy or torch -> float (k, nz) on the model's device."""
    z = torch.as_tensor(np.asarray(z_T)) if not torch.is_tensor(z_T) else z_T.detach()
    z = z[None] if z.ndim == 1 else z
    nz = model.config.generator.nz
    if z.ndim != 2 or z.shape[1] != nz or len(z) == 0:
        raise EditError(f"z_T must be one code (nz,) or codes (k, nz) with nz = {nz}, got shape {tuple(z.shape)}")
    return z.to(_device(model), torch.float32)


@torch.no_grad()
def _decode(model, z_T: torch.Tensor, noise: SamplerNoise) -> np.ndarray:
    """The T-step chain from explicit inputs, in chunks of BATCH -> uint8 (N, H, W, 3)."""
    out = []
    for s in range(0, len(z_T), BATCH):
        part = SamplerNoise(noise.x_T[s:s + BATCH], noise.z_T_noise[s:s + BATCH], noise.z[:, s:s + BATCH],
                            noise.eps[:, s:s + BATCH])
        out.append(to_uint8(sample(model.generator, model.schedule, z_T[s:s + BATCH], part,
                                   model.latent_slot)).cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def _latent_codes(model, noise: SamplerNoise) -> torch.Tensor:
    if not model.can_draw_z_T:
        raise EditError(NO_LATENT)
    return model.draw_z_T(noise.z_T_noise)


# --- encoding, reconstruction, interpolation -----------------------------------------------------
@torch.no_grad()
def encode(model, images) -> torch.Tensor:
    """z_T = SE(x0) of each image: float (N, nz) on the model's device."""
    x = as_model_input(model, images)
    return torch.cat([model.encoder(x[s:s + BATCH]).float() for s in range(0, len(x), BATCH)])


def reconstruct(model, images, seed: int = 0) -> np.ndarray:
    """Generate from z_T = SE(x0) with fresh x_T / z / eps: image i uses the noises of image i of
    `Engine.generate(n, seed)` (per-image seed seed * 2**16 + i)."""
    z_T = encode(model, images)
    return _decode(model, z_T, _noise(model, _seeds(seed, len(z_T))))


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """(1 - t) a + t b; exactly a at t = 0 and b at t = 1."""
    return (1.0 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of two tensors seen as flat vectors (float64 inside):
    sin((1 - t) w) / sin(w) a + sin(t w) / sin(w) b with w the angle between them; exactly a at t = 0
    and b at t = 1. Keeps the norm of equal-norm endpoints, unlike lerp, which shrinks Gaussian noise
    towards 0 midway (|x_T| ~ 0.71 sqrt(D) at t = 0.5). Falls back to lerp for (anti)parallel vectors."""
    a64, b64 = a.double(), b.double()
    cos = (a64.flatten() @ b64.flatten()) / (a64.norm() * b64.norm()).clamp_min(1e-300)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if float(torch.sin(omega)) < 1e-6:
        return lerp(a, b, t)
    out = torch.sin((1.0 - t) * omega) / torch.sin(omega) * a64 + torch.sin(t * omega) / torch.sin(omega) * b64
    return out.to(a.dtype)


def _weights(steps: int) -> list[float]:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise EditError(f"steps must be an integer >= 2 (the two endpoints included), got {steps!r}")
    return [i / (steps - 1) for i in range(steps)]


def interpolate_latent(model, img_a, img_b, steps: int = 8, seed: int = 0) -> np.ndarray:
    """Paper Fig. 3, latent space: z_T = lerp(SE(a), SE(b), i / (steps - 1)) with the same x_T, z, eps
    (those of `seed`) for every frame. Frame 0 has the inputs of `reconstruct(model, a, seed)`, the
    last frame those of `reconstruct(model, b, seed)`."""
    weights = _weights(steps)
    x = torch.cat([as_model_input(model, img_a), as_model_input(model, img_b)])
    if len(x) != 2:
        raise EditError(f"interpolate_latent takes one image a and one image b, got {len(x)} images in all")
    z_a, z_b = encode(model, x)
    z_T = torch.stack([lerp(z_a, z_b, w) for w in weights])
    return _decode(model, z_T, _repeat(_noise(model, _seeds(seed)), steps))


def interpolate_pixel(model, seed_a: int, seed_b: int, steps: int = 8, z_T=None,
                      method: str = "slerp") -> np.ndarray:
    """Paper Fig. 3, pixel space: x_T = slerp(x_T of seed_a, x_T of seed_b, i / (steps - 1)) with a fixed
    z_T and the z / eps of seed_a for every frame. z_T: one code (e.g. `encode(model, image)`), or None
    for the latent denoiser's sample from seed_a (an EditError when the checkpoint has none).
    `method="lerp"` interpolates linearly, as the paper's text words it; slerp (the default, as in
    Diffusion Autoencoders) keeps the frames' x_T at the norm of Gaussian noise."""
    weights = _weights(steps)
    if method not in ("slerp", "lerp"):
        raise EditError(f"method must be 'slerp' or 'lerp', got {method!r}")
    base, other = _noise(model, _seeds(seed_a)), _noise(model, _seeds(seed_b))
    code = _latent_codes(model, base) if z_T is None else _as_codes(model, z_T)
    if len(code) != 1:
        raise EditError(f"interpolate_pixel takes one fixed code z_T, got {len(code)}")
    mix = slerp if method == "slerp" else lerp
    noise = _repeat(base, steps)
    noise.x_T = torch.cat([mix(base.x_T, other.x_T, w) for w in weights])
    return _decode(model, code.expand(steps, -1), noise)


# --- Fig. 5: vary one input ------------------------------------------------------------------------
def _dataset_codes(model, dataset, n: int, seed: int) -> torch.Tensor:
    """SE of n dataset images picked at random (distinct while the dataset has n images) with `seed`."""
    if len(dataset) == 0:
        raise EditError("the dataset is empty")
    idx = np.random.default_rng(seed).choice(len(dataset), size=n, replace=n > len(dataset))
    return encode(model, torch.stack([dataset[int(i)][0] for i in idx]))


def vary(model, which: str, n: int = 8, base_seed: int = 0, z_T=None, dataset=None) -> np.ndarray:
    """Paper Fig. 5: n images where only `which` ("z_T", "z" or "x_T") changes. Image i draws the varied
    input from image i of `base_seed` (per-image seed base_seed * 2**16 + i) and everything else from its
    image 0, so image 0 is the same for the three choices (Fig. 5's shared top-left image) and is
    `Engine.generate(1, seed=base_seed)`. The posterior noise eps is always image 0's.

    The codes z_T come from, in this order of preference:
      * `z_T` when given: (k, nz) codes; varying z_T uses code i for image i (k = n), otherwise the
        fixed code is z_T[0];
      * the latent denoiser (DDIM from the latent noise of each image's seed), as for unconditional
        generation;
      * without a latent denoiser, `dataset`: SE of n random dataset images (chosen with base_seed;
        image i uses the i-th, the fixed code is the first);
    and an EditError when none of them is available."""
    if which not in VARY:
        raise EditError(f"which must be one of {', '.join(VARY)}, got {which!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise EditError(f"n must be a positive integer, got {n!r}")
    seeds = _seeds(base_seed, n)
    varied, base = _noise(model, seeds), _noise(model, seeds[:1])
    if z_T is not None:
        codes = _as_codes(model, z_T)
    elif model.can_draw_z_T:
        codes = _latent_codes(model, varied if which == "z_T" else base)
    elif dataset is not None:
        codes = _dataset_codes(model, dataset, n, base_seed)
    else:
        raise EditError(NO_LATENT)
    if which == "z_T" and len(codes) != n:
        raise EditError(f"varying z_T over {n} images needs {n} codes, got {len(codes)}")
    codes = codes if which == "z_T" else codes[:1].expand(n, -1)
    noise = _repeat(base, n)
    if which == "z":
        noise.z = varied.z
    elif which == "x_T":
        noise.x_T = varied.x_T
    return _decode(model, codes, noise)


# --- attribute manipulation (Diffusion Autoencoders) ------------------------------------------------
@dataclass
class AttributeDirection:
    """A linear attribute direction in the normalised code space (z_T - mean) / std."""

    target: int  # the label whose presence the direction points to
    direction: np.ndarray  # (nz,) unit vector in normalised code space (the classifier's weights)
    mean: np.ndarray  # (nz,) mean of the codes it was fitted on
    std: np.ndarray  # (nz,) their standard deviation
    proj_std: float  # std of the normalised codes along `direction`: the unit of a strength
    accuracy: float  # held-out accuracy of the classifier (stratified 20 % split)
    baseline: float  # held-out accuracy of always answering the majority class
    n_train: int
    n_test: int

    def shift(self, strength: float) -> np.ndarray:
        """The raw-code displacement of moving `strength` proj_stds along the direction in normalised
        space: ((z - mean) / std + s proj_std d) * std + mean = z + s proj_std d * std."""
        return strength * self.proj_std * self.direction * self.std


def fit_direction(codes, labels, target: int, seed: int = 0) -> AttributeDirection:
    """Fit `labels == target` vs the rest on codes normalised with their mean / std: a logistic
    regression (balanced class weights, as the rest usually outnumbers the target) on a stratified
    80 % split, scored on the other 20 %. Labels < 0 (unknown) are left out."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    codes, labels = np.asarray(codes, dtype=np.float64), np.asarray(labels).astype(np.int64)
    if codes.ndim != 2 or labels.shape != (len(codes),):
        raise EditError(f"expected codes (N, nz) and labels (N,), got {codes.shape} and {labels.shape}")
    known = labels >= 0
    codes, labels = codes[known], labels[known]
    present = sorted(int(v) for v in np.unique(labels))
    if int(target) not in present:
        raise EditError(f"label {target} does not occur in the labels; present: {present}")
    y = (labels == int(target)).astype(np.int64)
    if min(y.sum(), (1 - y).sum()) < 5:
        raise EditError(f"need at least 5 images with label {target} and 5 without, got {int(y.sum())} and "
                        f"{int((1 - y).sum())}")
    mean, std = codes.mean(0), codes.std(0).clip(min=1e-8)
    zn = (codes - mean) / std
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, random_state=seed, stratify=y)
    clf = LogisticRegression(max_iter=2000, class_weight="balanced").fit(zn[tr], y[tr])
    w = clf.coef_[0]
    if not np.linalg.norm(w) > 0:
        raise EditError("the classifier found no direction (all weights are zero)")
    d = w / np.linalg.norm(w)
    return AttributeDirection(target=int(target), direction=d, mean=mean, std=std,
                              proj_std=float((zn @ d).std()), accuracy=float(clf.score(zn[te], y[te])),
                              baseline=float(max(y[te].mean(), 1 - y[te].mean())), n_train=len(tr),
                              n_test=len(te))


def fit_attribute(model, images, labels, target: int, seed: int = 0) -> AttributeDirection:
    """`fit_direction` on the codes SE(x0) of `images`."""
    return fit_direction(encode(model, images).cpu().numpy(), labels, target, seed)


def manipulate(model, image, direction: AttributeDirection, strengths: Sequence[float] = (-1, -0.5, 0, 0.5, 1),
               scale: float = 1.0, seed: int = 0) -> np.ndarray:
    """One image per strength s: z_T = SE(image) moved by s * scale proj_stds along the direction (in
    normalised space, then de-normalised), with the x_T, z, eps of `seed` for all. Strength 0 has
    exactly the inputs of `reconstruct(model, image, seed)`."""
    z = encode(model, image)
    if len(z) != 1:
        raise EditError(f"manipulate takes one image, got {len(z)}")
    if len(strengths) == 0:
        raise EditError("give at least one strength")
    if not all(math.isfinite(float(s) * scale) for s in strengths):
        raise EditError(f"strengths times scale must be finite numbers, got {list(strengths)} x {scale}")
    nz = model.config.generator.nz
    if direction.direction.shape != (nz,):
        raise EditError(f"the direction has {direction.direction.shape[0]} dimensions but the model's codes {nz}")
    shifts = torch.from_numpy(np.stack([direction.shift(float(s) * scale) for s in strengths]))
    z_T = z + shifts.to(z.device, z.dtype)
    return _decode(model, z_T, _repeat(_noise(model, _seeds(seed)), len(strengths)))


# --- labels for the CLI ----------------------------------------------------------------------------
def read_labels_csv(path: str | Path, dataset) -> np.ndarray:
    """Labels for every dataset item from a CSV with columns `index,label` (any dataset) or
    `filename,label` (image folders; names relative to the folder, as in its labels.csv). Items the
    file does not list get -1."""
    path = Path(path)
    if not path.is_file():
        raise EditError(f"labels file {path} not found")
    files = getattr(dataset, "files", None)
    names = {Path(f).relative_to(dataset.root).as_posix(): i for i, f in enumerate(files or ())}
    labels, matched = np.full(len(dataset), -1, dtype=np.int64), 0
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise EditError(f"{path}, line {line}: not UTF-8 text ({e.reason} at byte "
                        f"{e.start})") from None
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        try:
            cols = reader.fieldnames or []
            key = "index" if "index" in cols else "filename"
            if "label" not in cols or key not in cols or (key == "filename" and files is None):
                accepted = "'index,label'" + (" or 'filename,label'" if files is not None else "")
                raise EditError(f"{path} must have a header {accepted}, got {reader.fieldnames}")
            twice = sorted({c for c in cols if cols.count(c) > 1} & {"index", "filename", "label"})
            if twice:
                raise EditError(f"{path}: the header names column {twice[0]!r} more than once")
            for row in reader:
                where = f"{path}, line {reader.line_num}"
                label = _csv_int(row["label"], where, "label")
                if key == "index":
                    i = _csv_int(row["index"], where, "index")
                    if not 0 <= i < len(dataset):
                        raise EditError(f"{where}: index {i} is outside the dataset's 0..{len(dataset) - 1}")
                else:
                    i = names.get((row["filename"] or "").strip().replace("\\", "/").removeprefix("./"))
                    if i is None:
                        continue
                labels[i], matched = label, matched + 1
        except csv.Error as e:  # a field over csv's 128 kB limit
            raise EditError(f"{path}, line {reader.line_num + 1}: not a readable CSV file ({e})") from None
    if matched == 0:
        raise EditError(f"{path} labels none of the dataset's {len(dataset)} images")
    return labels


LABEL_LIMIT = 1 << 31  # labels and indices in a labels CSV are in (-2**31, 2**31)


def _csv_int(text: str | None, where: str, what: str) -> int:
    value = ascii_int(text)
    if value is None:
        raise EditError(f"{where}: {what} {text!r} is not an integer")
    if not -LABEL_LIMIT < value < LABEL_LIMIT:
        raise EditError(f"{where}: {what} {value} is outside (-2**31, 2**31)")
    return value


# the command line lives in pdgan_train.cli.edit; `main` and `build_parser` resolve here for one release
__getattr__ = moved(__name__, "pdgan_train.cli.edit", ("main", "build_parser"))

if __name__ == "__main__":  # python -m pdgan_train.edit: the command
    raise SystemExit(__getattr__("main")())
