"""Image sets to score (`pdgan-eval --images`, `--images2`): a folder of images or an .npz of uint8 images,
read a range at a time, so 50,000 images never sit in memory at once.

    folder   every image under it, recursively (.png .jpg .jpeg .webp .bmp, hidden files skipped; the rule of
             `pdgan_train.data`'s image folders), sorted by path - so pdgan-generate's {seed:06d}.png files,
             with or without --subdirs, come in seed order - decoded as RGB uint8, never resized (the
             feature networks resize); all must have one size
    .npz     the array `images` (pdgan-generate --format npz) or `arr_0` (ADM / guided-diffusion / DiT
             sample batches): (N, H, W, C) uint8 with C = 1 or 3

An .npz member's header is read before its data (`npz_arrays`): a wrong dtype, a wrong number of axes or
an absurd shape (more than MAX_IMAGES images, sides over MAX_SIDE, more bytes than the member holds) is
refused in one line, before anything is allocated; nothing is ever unpickled.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from pdgan_infer.errors import PDGANError

from .data import _list_images, _open_image

MAX_IMAGES = 10_000_000  # images in one set
MAX_SIDE = 8192  # pixels per image side
NPZ_KEYS = ("images", "arr_0")  # the image arrays read from an .npz, in this order of preference


class ImageSetError(PDGANError, ValueError):
    """An image set cannot be read as asked; the message names the file and what to do."""


# --- .npz members, header first ----------------------------------------------------------------
def _member_header(fp: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fp)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fp)
    raise ValueError(f"unsupported .npy format version {version}")


def npz_arrays(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype, int]]:
    """{name: (shape, dtype, bytes of the member)} of an .npz, from the members' headers only."""
    path = Path(path)
    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with z.open(info) as fp:
                    shape, _, dtype = _member_header(fp)
                out[info.filename[:-4]] = (tuple(shape), dtype, info.file_size)
    except FileNotFoundError:
        raise ImageSetError(f"{path} not found") from None
    except zipfile.BadZipFile:
        raise ImageSetError(f"{path} is not an .npz file (a zip of .npy arrays, as np.savez writes)") from None
    except (OSError, ValueError, EOFError) as err:
        raise ImageSetError(f"{path} is not a readable .npz ({type(err).__name__}: {err})") from None
    return out


def _data_offset(fp: IO[bytes]) -> int:
    _member_header(fp)
    return fp.tell()


class NpzImages:
    """The uint8 (N, H, W, C) array `key` of an .npz, read a range of images at a time."""

    def __init__(self, path: Path, key: str, shape: tuple[int, int, int, int]):
        self.path, self.key = path, key
        self.count, self.shape = shape[0], shape[1:]

    def read(self, start: int, stop: int) -> np.ndarray:
        per = int(np.prod(self.shape))
        with zipfile.ZipFile(self.path) as z, z.open(f"{self.key}.npy") as fp:
            fp.seek(_data_offset(fp) + start * per)
            data = fp.read((stop - start) * per)
        if len(data) != (stop - start) * per:
            raise ImageSetError(f"{self.path}: {self.key} ends before image {stop - 1}; the file is truncated")
        return np.frombuffer(data, np.uint8).reshape(stop - start, *self.shape).copy()  # writable


class FolderImages:
    """The images under a folder (module docstring), decoded a range at a time."""

    def __init__(self, root: Path, files: list[Path]):
        self.path, self.files, self.count = root, files, len(files)
        first = self._decode(0)
        self.shape = first.shape

    def _decode(self, index: int) -> np.ndarray:
        return np.asarray(_open_image(str(self.files[index]), mode="RGB"))

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.shape), np.uint8)
        for i in range(start, stop):
            image = self._decode(i)
            if image.shape != self.shape:
                raise ImageSetError(f"{self.files[i]} is {image.shape[1]}x{image.shape[0]}, the other images under "
                                    f"{self.path} are {self.shape[1]}x{self.shape[0]}; a scored set has one size")
            out[i - start] = image
        return out


def open_image_set(spec: str | os.PathLike, what: str = "--images") -> FolderImages | NpzImages:
    """A folder of images or an .npz of them (module docstring); ImageSetError names what is wrong."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files = _list_images(path)
        if not files:
            raise ImageSetError(f"{what} {path}: no images in it (searched recursively for .png, .jpg, .jpeg, .webp, "
                                ".bmp)")
        if len(files) > MAX_IMAGES:
            raise ImageSetError(f"{what} {path} holds {len(files):,} images, more than {MAX_IMAGES:,}")
        return FolderImages(path, files)
    if not path.exists():
        raise ImageSetError(f"{what} {path} not found (expected a folder of images or an .npz)")
    arrays = npz_arrays(path)
    key = next((k for k in NPZ_KEYS if k in arrays), None)
    if key is None:
        raise ImageSetError(f"{what} {path} has arrays {sorted(arrays)}, none of {' or '.join(NPZ_KEYS)} (uint8 "
                            "images (N, H, W, C))")
    shape, dtype, size = arrays[key]
    _check_shape(f"{what} {path}: {key}", shape, dtype, size)
    return NpzImages(path, key, shape)


def _check_shape(what: str, shape: tuple[int, ...], dtype: np.dtype, size: int) -> None:
    if dtype != np.uint8 or len(shape) != 4 or shape[3] not in (1, 3):
        raise ImageSetError(f"{what} is {dtype} {shape}; expected uint8 images (N, H, W, C) with C = 1 or 3")
    n, h, w, _ = shape
    if not (1 <= n <= MAX_IMAGES and 1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise ImageSetError(f"{what} has shape {shape}: at most {MAX_IMAGES:,} images of at most {MAX_SIDE} pixels "
                            "a side, and at least one")
    if int(np.prod(shape)) > size:
        raise ImageSetError(f"{what} claims shape {shape} but its member holds only {size:,} bytes; the file is "
                            "truncated or damaged")

