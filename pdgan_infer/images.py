"""Images as files and objects: `to_pil` (one uint8 image -> PIL), `as_output_type` (a uint8 batch -> numpy, PIL or
torch, the `output_type` of `Engine.generate`), `save_png`, `encode_png`, `load_image`, and `make_grid`/`save_grid`.
Writes are atomic (temporary file + rename). PNG is lossless, so a saved image decodes to the same
uint8 values; the compressed bytes may differ between zlib builds (zlib-ng), the pixels do not."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .checkpoint import atomic_path


def to_pil(image: np.ndarray):
    """(H, W, 3) / (H, W, 1) / (H, W) uint8 array -> a PIL image (RGB or L)."""
    from PIL import Image

    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) image, got {img.dtype} {img.shape}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(img), "RGB" if img.ndim == 3 else "L")


OUTPUT_TYPES = ("np", "pil", "pt")


def check_output_type(output_type: object) -> str:
    """`output_type` if it is one of OUTPUT_TYPES, else ValueError naming them."""
    if not isinstance(output_type, str) or output_type not in OUTPUT_TYPES:
        raise ValueError(f"unknown output_type {output_type!r}; choose 'np' (uint8 (N, H, W, 3) array), 'pil' (a list "
                         "of PIL images) or 'pt' (float32 torch (N, 3, H, W) in [0, 1])")
    return output_type


def as_output_type(images: np.ndarray, output_type: str = "np"):
    """(N, H, W, 3) uint8 images as `output_type`: "np" the array itself; "pil" a list of N PIL images (`to_pil`);
    "pt" a float32 torch tensor (N, 3, H, W) in [0, 1] (diffusers' layout), exactly images / 255, so
    `(x * 255).round().to(torch.uint8)` gives the uint8 images back: every output type holds the same image."""
    if check_output_type(output_type) == "np":
        return images
    if output_type == "pil":
        return [to_pil(image) for image in images]
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)


def encode_png(image: np.ndarray) -> bytes:
    """(H, W, 3) or (H, W) uint8 -> PNG bytes (8-bit RGB or grey)."""
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG")
    return buf.getvalue()


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write one uint8 image as PNG (atomic: a reader never sees a half-written file)."""
    pil = to_pil(image)
    path = Path(path)
    with atomic_path(path) as tmp:
        pil.save(tmp, format="PNG")
    return path


def load_image(path: str | os.PathLike) -> np.ndarray:
    """A PNG/JPEG/... file -> (H, W, 3) uint8 RGB array."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _as_uint8_nhwc(images) -> np.ndarray:
    """(N, H, W, C) or (N, H, W) uint8 array or tensor -> (N, H, W, C) numpy, C in {1, 3}."""
    if hasattr(images, "detach"):  # a torch tensor
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images (N, H, W, C) as Engine.generate returns, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected uint8 images (N, H, W, C) with C = 1 or 3, got shape {images.shape}")
    return images


def make_grid(images: np.ndarray, nrow: int = 10, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """(N, H, W, C) uint8 -> one (rows*(H+pad)+pad, nrow*(W+pad)+pad, C) image, row-major."""
    images = _as_uint8_nhwc(images)
    for name, v, lo in (("nrow", nrow, 1), ("pad", pad, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    n, h, w, c = images.shape
    nrow = max(1, min(nrow, n)) if n else 1
    rows = max(1, -(-n // nrow))
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), pad_value, np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = images[i]
    return grid


def save_grid(images: np.ndarray, path: str | os.PathLike, nrow: int = 10, pad: int = 2) -> Path:
    """Save a batch of uint8 NHWC images as one PNG grid (atomic)."""
    return save_png(make_grid(images, nrow, pad), path)
