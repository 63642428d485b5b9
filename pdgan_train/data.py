"""Training data: scikit-learn digits, CIFAR-10 python batches and image folders.

Every dataset yields `(image, label)`: `image` a float32 tensor (channels, resolution, resolution) in
[-1, 1], `label` an int (-1 when unknown). `build_dataset(spec, ...)` picks the kind from `spec`:

    "digits"                      scikit-learn's bundled 8x8 digits, upsampled (no download)
    .../cifar-10-batches-py       CIFAR-10 (the directory itself or its parent); 32x32 only
    any other directory           images found recursively, resized and centre-cropped lazily

The datasets hold only arrays, tensors and path strings (no lambdas or open files), so they pickle
into DataLoader workers and work with a `DistributedSampler`. Augmentation is done on the batch by
`random_hflip` with an explicit generator, so a resumed run draws the same flips (photographs only:
a mirrored digit is not a digit; the digits get DiffAugment translations inside the loss instead).
"""
from __future__ import annotations

import csv
import importlib.util
import logging
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset, Subset

from pdgan_infer.errors import PDGANError

log = logging.getLogger("pdgan.data")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
LABELS_FILE = "labels.csv"
CIFAR_DIRNAME = "cifar-10-batches-py"
CIFAR_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR_SPLITS = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
DIGITS_SPLITS = ("train", "test", "all")
DIGITS_TEST_FRACTION = 0.2  # stratified held-out share of scikit-learn's 1797 digits
DIGITS_SPLIT_SEED = 0  # fixed: the split is part of the data set's definition, not of a run


class DataError(PDGANError, ValueError):
    """A data set file is not what it should be; the message names the file and what to do."""


def data_inputs(spec: str | None) -> list[Path]:
    """The folder a data set argument reads (for the outputs' check: nothing is written into it); none for
    'digits' (bundled with scikit-learn) or no argument."""
    return [] if spec is None or spec == "digits" else [Path(spec).expanduser()]


def build_dataset(spec: str, resolution: int, channels: int = 3, *, allow_upscale: bool = False,
                  split: str = "train", check_images: bool = False, progress: bool | None = None) -> Dataset:
    """The dataset named by `spec` ("digits", a CIFAR-10 batches directory or an image folder).

    `allow_upscale` lets an image folder contain images smaller than `resolution` (they are
    upscaled); `split` is "train" or "test" for CIFAR-10 (its test batch), "train", "test" or "all"
    for the digits (a stratified 80/20 split, `DigitsDataset`) and "train" for image folders.
    `check_images` decodes every image of a folder now (a truncated file fails here, not mid-run; its
    progress: `pdgan_infer.progress`, `progress` as `Progress(show=...)` takes it).
    """
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    if spec == "digits":
        return DigitsDataset(resolution, channels, split=split)
    if split not in _CIFAR_SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"dataset {spec!r} not found: expected 'digits', a CIFAR-10 batches directory "
            f"({CIFAR_DIRNAME}/ with data_batch_1..5 and test_batch, or its parent; get it from "
            f"{CIFAR_SOURCE}) or a folder of images")
    cifar = _find_cifar_dir(path)
    if cifar is not None:
        return CIFAR10Dataset(cifar, resolution, channels, split=split)
    if not path.is_dir():
        raise ValueError(f"dataset {spec!r} is a file; expected 'digits', a CIFAR-10 batches directory "
                         f"or a folder of images (archives must be extracted first)")
    _train_split_only(split, f"the image folder {path}")
    return ImageFolderDataset(path, resolution, channels, allow_upscale=allow_upscale,
                              check_files="decode" if check_images else True, progress=progress)


def random_hflip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image of the batch (N, C, H, W) left-right with probability 1/2.

    Draws exactly N numbers from `generator` (on the generator's device), so the flips are
    reproducible from a saved generator state whatever device the images are on.
    """
    flip = torch.randint(0, 2, (images.shape[0],), generator=generator, device=generator.device)
    flip = flip.to(device=images.device, dtype=torch.bool).view(-1, *([1] * (images.ndim - 1)))
    return torch.where(flip, images.flip(-1), images)


def random_translate(*images: torch.Tensor, max_shift: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """DiffAugment's translation (Zhao et al., 2020): shift every sample of the batch by its own
    integer (dy, dx) in [-max_shift, max_shift], filling with zeros; every tensor of `images` (N, C, H, W)
    gets the same per-sample shift, so a pair (x_{t-1}, x_t) stays aligned.

    Applied to the discriminator's real and fake inputs alike it cannot leak into the samples, and it
    is differentiable (a gather), so the generator and R1 gradients pass through it. Draws 2N numbers."""
    n, _, h, w = images[0].shape
    dev = images[0].device
    shift = torch.randint(-max_shift, max_shift + 1, (2, n), generator=generator, device=generator.device).to(dev)
    rows = (torch.arange(h, device=dev)[None, :] + max_shift - shift[0][:, None])[:, :, None]  # (N, H, 1)
    cols = (torch.arange(w, device=dev)[None, :] + max_shift - shift[1][:, None])[:, None, :]  # (N, 1, W)
    batch = torch.arange(n, device=dev)[:, None, None]
    out = []
    for x in images:
        padded = F.pad(x, (max_shift,) * 4)
        out.append(padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2))  # (N, C, H, W)
    return tuple(out)


def dataset_labels(ds: Dataset) -> np.ndarray | None:
    """Integer labels of every item of `ds` (-1 where unknown), or None when the dataset has none.
    Understands the datasets of this module and `Subset` / `ConcatDataset` of them."""
    if isinstance(ds, Subset):
        base = dataset_labels(ds.dataset)
        return None if base is None else base[np.asarray(ds.indices, dtype=np.int64)]
    if isinstance(ds, ConcatDataset):
        parts = [dataset_labels(d) for d in ds.datasets]
        return None if any(p is None for p in parts) else np.concatenate(parts)
    labels = getattr(ds, "labels", None)
    return None if labels is None else np.asarray(labels, dtype=np.int64).copy()


def _train_split_only(split: str, what: str) -> None:
    if split != "train":
        raise ValueError(f"split={split!r} is only available for CIFAR-10 and the digits; {what} has a single split")


def _require(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{what} needs the '{module}' package: pip install 'pdgan[train]'")


def _to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 -1..1."""
    return pixels.to(torch.float32) / 127.5 - 1.0


# --- digits ------------------------------------------------------------------------------------
def digits_split_indices(split: str) -> np.ndarray:
    """Indices into scikit-learn's `load_digits()` of the "train" (80%), "test" (20%) or "all" split.
    Stratified by label with a fixed seed, sorted, so every run, probe and metric sees the same split."""
    if split not in DIGITS_SPLITS:
        raise ValueError(f"digits split must be one of {list(DIGITS_SPLITS)}, got {split!r}")
    _require("sklearn", "the digits dataset")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    every = np.arange(len(labels))
    if split == "all":
        return every
    train, test = train_test_split(every, test_size=DIGITS_TEST_FRACTION, stratify=labels,
                                   random_state=DIGITS_SPLIT_SEED)
    return np.sort(train if split == "train" else test)


class DigitsDataset(Dataset):
    """scikit-learn's 8x8 digits (values 0..16, labels 0-9), scaled to [-1, 1], upsampled bilinearly
    (align_corners=False) to `resolution` and replicated to `channels`.

    `split`: "train" (1437 digits), "test" (360 held-out digits) or "all" (1797); `indices` are the
    chosen rows of `load_digits()` (`digits_split_indices`)."""

    def __init__(self, resolution: int, channels: int = 3, split: str = "train"):
        from sklearn.datasets import load_digits

        self.indices = digits_split_indices(split)
        digits = load_digits()
        self.resolution, self.channels, self.split = resolution, channels, split
        pixels = torch.from_numpy(digits.images[self.indices].astype(np.float32)) / 8.0 - 1.0  # (N, 8, 8)
        x = pixels[:, None]
        if resolution != x.shape[-1]:  # all at once: the same numbers as image by image
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                              antialias=resolution < x.shape[-1])
        self.images = x.expand(-1, channels, -1, -1).contiguous()  # (N, channels, resolution, resolution)
        self.labels = digits.target[self.indices].astype(np.int64)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].clone(), int(self.labels[index])


# --- CIFAR-10 ----------------------------------------------------------------------------------
class UnsafePickleError(PDGANError, pickle.UnpicklingError):
    """A pickle referenced a global that a CIFAR-10 batch never contains."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR-10 batch may name: numpy's array/dtype reconstruction helpers
    (under both the numpy 1 `numpy.core` and numpy 2 `numpy._core` module paths) and
    `_codecs.encode`, which Python 3 uses for bytes in protocol-2 pickles."""
    import codecs

    core = np._core if hasattr(np, "_core") else np.core
    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                         ("_codecs", "encode"): codecs.encode}
    for prefix in ("numpy.core", "numpy._core"):
        table[(f"{prefix}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        table[(f"{prefix}.numeric", "_frombuffer")] = core.numeric._frombuffer
    return table


class _CIFARUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals of `_numpy_globals` and refuses everything else,
    so a malicious file cannot run code (a bare `pickle.load` would call whatever it names)."""

    def __init__(self, file: Any, path: Path):
        super().__init__(file, encoding="bytes")  # CIFAR-10 was pickled by Python 2
        self._path = path
        self._allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {self._path}: it references {module}.{name}, which a CIFAR-10 batch "
                f"never contains (only numpy arrays, lists, bytes and dicts); the file is not a genuine "
                f"CIFAR-10 batch - re-extract {CIFAR_SOURCE}") from None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    """(data uint8 (n, 3072), labels) of one CIFAR-10 batch file, validated."""
    try:
        with open(path, "rb") as f:
            batch = _CIFARUnpickler(f, path).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # noqa: BLE001 - a broken pickle can raise almost anything; re-raised named
        raise ValueError(f"cannot read CIFAR-10 batch {path} ({type(err).__name__}: {err}); the file is "
                         f"truncated or not a CIFAR-10 python batch - re-extract {CIFAR_SOURCE}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} is not a CIFAR-10 batch: it holds a {type(batch).__name__}, not a dict; "
                        f"re-extract {CIFAR_SOURCE}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else repr(type(data))
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (n, 3072), got {got}")
    if labels is None or len(labels) != data.shape[0]:
        raise ValueError(f"{path}: expected {data.shape[0]} 'labels', got "
                         f"{'none' if labels is None else len(labels)}")
    labels = [int(v) for v in labels]
    if labels and not 0 <= min(labels) <= max(labels) <= 9:
        raise ValueError(f"{path}: CIFAR-10 labels must be in 0..9, got {min(labels)}..{max(labels)}")
    return data, labels


def _find_cifar_dir(path: Path) -> Path | None:
    """`path` itself when it is a CIFAR-10 batches directory, its `cifar-10-batches-py` child when it
    has one, else None."""
    if path.is_dir() and (path.name == CIFAR_DIRNAME or (path / "data_batch_1").is_file()):
        return path
    if (path / CIFAR_DIRNAME).is_dir():
        return path / CIFAR_DIRNAME
    return None


class CIFAR10Dataset(Dataset):
    """CIFAR-10 from the python batches; held in memory as uint8 (N, 3, 32, 32).

    Each row of a batch's `data` is 3072 bytes: the 1024 red values (32 rows of 32, row-major), then
    the green, then the blue plane, so reshaping to (3, 32, 32) gives CHW directly.
    """

    def __init__(self, root: str | os.PathLike[str], resolution: int = 32, channels: int = 3,
                 split: str = "train"):
        root = Path(root)
        if resolution != 32:
            raise ValueError(f"CIFAR-10 images are 32x32 but resolution {resolution} was requested; use a "
                             f"32x32 preset (e.g. --preset cifar10)")
        if channels != 3:
            raise ValueError(f"CIFAR-10 images are RGB but channels={channels} was requested; use channels=3")
        if split not in _CIFAR_SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        names = _CIFAR_SPLITS[split]
        missing = [n for n in names if not (root / n).is_file()]
        if missing:
            raise FileNotFoundError(f"CIFAR-10 directory {root} lacks {', '.join(missing)}; extract "
                                    f"{CIFAR_SOURCE} completely")
        batches = [_read_cifar_batch(root / n) for n in names]
        data = np.concatenate([d for d, _ in batches])
        self.root, self.split = root, split
        self.images = torch.from_numpy(data.reshape(-1, 3, 32, 32))
        self.labels = np.asarray([v for _, lab in batches for v in lab], dtype=np.int64)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return _to_unit_range(self.images[index]), int(self.labels[index])


# --- image folders -----------------------------------------------------------------------------
def _list_images(root: Path) -> list[Path]:
    """Image files under `root`, recursively (following directory links once each), skipping
    hidden files and directories, sorted by their path relative to `root`. Names that are not
    regular files (a named pipe would block the first read forever, a device never ends, a
    dangling link) are skipped with a warning."""
    found, seen, skipped = [], set(), []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link cycle
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = Path(dirpath, name)
            (found if _is_regular(path) else skipped).append(path)
    if skipped:
        log.warning(f"skipped {len(skipped)} image name(s) under {root} that are not regular files "
                    f"(named pipes, devices or dangling links), e.g. {skipped[0]}")
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _is_regular(path: str | os.PathLike) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)  # follows links; never opens (a FIFO's open blocks)
    except OSError:
        return False


def _read_labels(root: Path, names: list[str]) -> np.ndarray | None:
    """Labels of `names` (posix paths relative to root) from root/labels.csv, -1 for images it does
    not list; None when there is no labels.csv."""
    csv_path = root / LABELS_FILE
    if not csv_path.is_file():
        return None
    table: dict[str, int] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"filename", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{csv_path} must have a header with columns 'filename,label', got "
                             f"{reader.fieldnames}")
        for row in reader:
            name = (row["filename"] or "").strip().replace("\\", "/").removeprefix("./")
            try:
                table[name] = int(row["label"])
            except (TypeError, ValueError):
                raise ValueError(f"{csv_path}, line {reader.line_num}: label {row['label']!r} of {name!r} "
                                 f"is not an integer") from None
    labels = np.asarray([table.get(n, -1) for n in names], dtype=np.int64)
    if table and not any(n in table for n in names):
        raise ValueError(f"{csv_path} lists {len(table)} files but none of the {len(names)} images under "
                         f"{root}; filenames must be relative to that folder (e.g. 'sub/img.png')")
    return labels


class ImageFolderDataset(Dataset):
    """Images found recursively under `root` (.png/.jpg/.jpeg/.webp/.bmp, any case), loaded lazily,
    converted to RGB (L when channels == 1), resized with bicubic filtering so the shorter side is
    `resolution`, then centre-cropped. Labels come from `root/labels.csv` (`filename,label`).

    `check_files` opens every file's header at construction, so unreadable files and images smaller
    than `resolution` are reported before training starts rather than hours into it; "decode" decodes
    every image completely (slower; also catches files truncated after their header).
    """

    def __init__(self, root: str | os.PathLike[str], resolution: int, channels: int = 3, *,
                 allow_upscale: bool = False, check_files: bool | str = True, progress: bool | None = None):
        _require("PIL", "loading an image folder")
        if channels not in (1, 3):
            raise ValueError(f"image folders are loaded as RGB (channels=3) or greyscale (channels=1), "
                             f"got channels={channels}")
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
        files = _list_images(root)
        if not files:
            raise ValueError(f"no images in {root} (searched recursively for "
                             f"{', '.join(IMAGE_EXTENSIONS)}, any case)")
        self.root, self.resolution, self.channels = root, resolution, channels
        self.allow_upscale = allow_upscale
        self.files = [str(p) for p in files]
        self.labels = _read_labels(root, [p.relative_to(root).as_posix() for p in files])
        if check_files == "decode":
            from pdgan_infer.progress import track
            for index in track(range(len(self.files)), "check images", "img", progress, leave=False):
                self[index]
        elif check_files:
            for path in self.files:
                self._check_size(path, _open_image(path, header_only=True))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.files[index]
        image = _open_image(path, mode="L" if self.channels == 1 else "RGB")
        self._check_size(path, image.size)
        pixels = torch.from_numpy(np.array(_resize_center_crop(image, self.resolution)))
        pixels = pixels[None] if pixels.ndim == 2 else pixels.permute(2, 0, 1)
        label = -1 if self.labels is None else int(self.labels[index])
        return _to_unit_range(pixels).contiguous(), label

    def _check_size(self, path: str, size: tuple[int, int]) -> None:
        w, h = size
        if min(w, h) < self.resolution and not self.allow_upscale:
            raise ValueError(
                f"image {path} is {w}x{h}, smaller than the training resolution {self.resolution} on its "
                f"shorter side; pick a preset with resolution <= {min(w, h)}, or allow upscaling with "
                f"allow_upscale=True (CLI --allow-upscale)")


def _open_image(path: str, mode: str = "RGB", header_only: bool = False) -> Any:
    """The decoded image in `mode` (EXIF orientation applied), or only its (width, height) when
    `header_only`. Any decoder failure becomes a ValueError naming the file."""
    from PIL import Image, ImageOps

    try:
        # O_NONBLOCK: opening a named pipe returns at once instead of waiting for a writer; regular
        # files ignore the flag.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise DataError(f"cannot read image {path} ({err.strerror}); delete or replace it") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DataError(f"cannot read image {path}: it is not a regular file (a named pipe or a device); "
                            f"delete it from the data set")
        try:
            with Image.open(f) as im:
                if header_only:
                    return im.size
                return ImageOps.exif_transpose(im).convert(mode)
        except Exception as err:  # noqa: BLE001 - PIL's decoders raise many types; re-raised naming the file
            raise DataError(f"cannot read image {path} ({type(err).__name__}: {err}); the file is corrupt or "
                            f"not an image - delete or replace it") from None


def _resize_center_crop(image: Any, resolution: int) -> Any:
    """Resize (bicubic, antialiased when shrinking) so the shorter side is `resolution`, then crop
    the central resolution x resolution square (offsets rounded down)."""
    from PIL import Image

    w, h = image.size
    short = min(w, h)
    if short != resolution:
        w, h = max(resolution, round(w * resolution / short)), max(resolution, round(h * resolution / short))
        image = image.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - resolution) // 2, (h - resolution) // 2
    return image.crop((left, top, left + resolution, top + resolution))
