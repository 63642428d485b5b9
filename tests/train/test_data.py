"""pdgan_train.data: digits, CIFAR-10 batches (restricted unpickling), image folders, random_hflip."""
from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hang_guard import in_thread  # tests/support

from pdgan_infer import PDGANError
from pdgan_train.data import UnsafePickleError, build_dataset, dataset_labels, random_hflip

Image = pytest.importorskip("PIL.Image", reason="pillow is needed for the image-folder tests")


# --- digits ------------------------------------------------------------------------------------
def test_digits_shapes_range_labels():
    from sklearn.datasets import load_digits

    ref = load_digits()
    ds = build_dataset("digits", 32, split="all")
    assert len(ds) == 1797
    x, y = ds[5]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert y == int(ref.target[5]) and isinstance(y, int)
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])
    lo, hi = min(ds[i][0].min().item() for i in range(50)), max(ds[i][0].max().item() for i in range(50))
    assert -1.0 <= lo < -0.99 and 0.5 < hi <= 1.0
    np.testing.assert_array_equal(dataset_labels(ds), ref.target)
    # independent computation: 0..16 -> [-1, 1], bilinear, align_corners=False
    base = torch.tensor(ref.images[5], dtype=torch.float32) / 16 * 2 - 1
    expect = F.interpolate(base[None, None], size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(x[0], expect)


def test_digits_native_resolution_channels_and_determinism():
    from sklearn.datasets import load_digits

    ds = build_dataset("digits", 8, channels=1)
    x, _ = ds[0]
    assert x.shape == (1, 8, 8)
    i = int(ds.indices[0])  # the training split's first digit
    torch.testing.assert_close(x[0], torch.tensor(load_digits().images[i] / 8 - 1, dtype=torch.float32))
    a, b = build_dataset("digits", 16, channels=2), build_dataset("digits", 16, channels=2)
    assert a[100][0].shape == (2, 16, 16)
    assert torch.equal(a[100][0], b[100][0]) and torch.equal(a[100][0], a[100][0])
    x[0] += 1  # items are copies: changing one leaves the dataset as it was
    assert not torch.equal(ds[0][0], x)
    with pytest.raises(ValueError, match="digits split"):
        build_dataset("digits", 32, split="valid")


# --- CIFAR-10 ----------------------------------------------------------------------------------
def _cifar_row(img_hwc: np.ndarray) -> np.ndarray:
    """CIFAR's row format: 1024 R values (row-major), then 1024 G, then 1024 B."""
    return np.concatenate([img_hwc[:, :, c].reshape(-1) for c in range(3)])


def _write_cifar(root, protocol: int, n_per_batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    images = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = 3 if name == "test_batch" else n_per_batch
        hwc = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        images[name] = hwc
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
                 b"data": np.stack([_cifar_row(im) for im in hwc]), b"filenames": [b"x.png"] * n}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
    return images


@pytest.mark.parametrize("protocol", sorted({2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL}))
def test_cifar_layout_and_splits(tmp_path, protocol):
    images = _write_cifar(tmp_path, protocol)
    for spec in (tmp_path, tmp_path / "cifar-10-batches-py"):  # the parent or the directory itself
        ds = build_dataset(str(spec), 32)
        assert len(ds) == 10
    x, y = ds[2]  # first image of data_batch_2
    expect = torch.from_numpy(images["data_batch_2"][0]).permute(2, 0, 1).float() / 127.5 - 1
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
    torch.testing.assert_close(x, expect, rtol=0, atol=1e-6)
    row = _cifar_row(images["data_batch_2"][0]).astype(np.float64) / 127.5 - 1
    for pos, chw in ((1, (0, 0, 1)), (1024 + 33, (1, 1, 1)), (3071, (2, 31, 31))):  # R, G, B planes
        assert x[chw].item() == pytest.approx(row[pos], abs=1e-6)
    labels = dataset_labels(ds)
    assert labels.shape == (10,) and labels[2] == y and 0 <= labels.min() <= labels.max() <= 9
    test = build_dataset(str(tmp_path), 32, split="test")
    assert len(test) == 3
    torch.testing.assert_close(test[1][0], torch.from_numpy(images["test_batch"][1]).permute(2, 0, 1)
                               .float() / 127.5 - 1, rtol=0, atol=1e-6)


def _py2_cifar_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch in the format of the real CIFAR-10 files (Python 2 cPickle, protocol 2): strings as
    (SHORT_)BINSTRING, numpy under `numpy.core.multiarray`. Written opcode by opcode."""
    def string(b: bytes) -> bytes:
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b

    def integer(v: int) -> bytes:
        return b"K" + bytes([v]) if v < 256 else b"M" + struct.pack("<H", v)

    n, m = data.shape
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + integer(0) + b"\x85"
             + string(b"b") + b"\x87R")  # _reconstruct(ndarray, (0,), 'b')
    dtype = (b"cnumpy\ndtype\n" + string(b"u1") + integer(0) + integer(1) + b"\x87R"
             + b"(" + integer(3) + string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    state = b"(" + integer(1) + integer(n) + integer(m) + b"\x86" + dtype + b"\x89" + string(data.tobytes()) + b"tb"
    labels_list = b"](" + b"".join(integer(v) for v in labels) + b"e"
    return b"\x80\x02}(" + string(b"data") + array + state + string(b"labels") + labels_list + b"u."


def test_cifar_python2_format(tmp_path):
    images = _write_cifar(tmp_path, 2)
    hwc = images["data_batch_1"]
    raw = _py2_cifar_pickle(np.stack([_cifar_row(im) for im in hwc]), [4, 8])
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(raw)
    ds = build_dataset(str(tmp_path), 32)
    assert ds[1][1] == 8
    torch.testing.assert_close(ds[1][0], torch.from_numpy(hwc[1]).permute(2, 0, 1).float() / 127.5 - 1,
                               rtol=0, atol=1e-6)


def test_cifar_wrong_resolution_and_channels(tmp_path):
    _write_cifar(tmp_path, 2)
    with pytest.raises(ValueError, match=r"32x32.*--preset cifar10"):
        build_dataset(str(tmp_path), 64)
    with pytest.raises(ValueError, match="channels=3"):
        build_dataset(str(tmp_path), 32, channels=1)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_restricted_unpickler_rejects_code(tmp_path):
    _write_cifar(tmp_path, 2)
    marker = tmp_path / "pwned"
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": [0]}))
    with pytest.raises(UnsafePickleError, match=r"data_batch_3.*system"):
        build_dataset(str(tmp_path), 32)
    assert not marker.exists()


def test_cifar_broken_files(tmp_path):
    _write_cifar(tmp_path, 2)
    d = tmp_path / "cifar-10-batches-py"
    good = (d / "data_batch_4").read_bytes()
    (d / "data_batch_4").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"data_batch_4.*truncated"):
        build_dataset(str(d), 32)
    (d / "data_batch_4").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"data_batch_4.*\(n, 3072\)"):
        build_dataset(str(d), 32)
    (d / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        build_dataset(str(d), 32)


# --- image folders -----------------------------------------------------------------------------
def _png(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _to_unit(array: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(array.astype(np.float32))
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    return t / 127.5 - 1


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "imgs"
    exact = rng.integers(0, 256, (16, 25, 3), dtype=np.uint8)  # H=16 already: only a crop
    wide = np.zeros((32, 64, 3), np.uint8)  # red | green | blue columns 0-15 | 16-47 | 48-63
    wide[:, :16, 0], wide[:, 16:48, 1], wide[:, 48:, 2] = 255, 255, 255
    tall = rng.integers(0, 256, (40, 20, 3), dtype=np.uint8)
    _png(root / "a" / "exact.png", exact)
    _png(root / "a" / "b" / "wide.PNG", wide)
    _png(root / "tall.png", tall)
    (root / "notes.txt").write_text("not an image")
    return root, {"a/exact.png": exact, "a/b/wide.PNG": wide, "tall.png": tall}


def test_image_folder_resize_and_crop(folder):
    root, arrays = folder
    ds = build_dataset(str(root), 16)
    assert len(ds) == 3  # nested, case-insensitive, the .txt ignored; sorted by relative path
    assert [os.path.relpath(f, root) for f in ds.files] == ["a/b/wide.PNG", "a/exact.png", "tall.png"]
    x, y = ds[1]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == -1
    torch.testing.assert_close(x, _to_unit(arrays["a/exact.png"][:, 4:20]), rtol=0, atol=1e-6)  # (25-16)//2
    # wide: shorter side 32 -> 16 makes it 16x32; the crop keeps columns 8..23 (= source 16..47)
    resized = np.array(Image.fromarray(arrays["a/b/wide.PNG"]).resize((32, 16), Image.Resampling.BICUBIC))
    x = ds[0][0]
    torch.testing.assert_close(x, _to_unit(resized[:, 8:24]), rtol=0, atol=1e-6)
    assert torch.all(x[1, :, 3:13] == 1) and torch.all(x[0, :, 3:13] == -1)  # interior is pure green
    # tall: 20x40 -> 16x32, rows 8..23
    resized = np.array(Image.fromarray(arrays["tall.png"]).resize((16, 32), Image.Resampling.BICUBIC))
    torch.testing.assert_close(ds[2][0], _to_unit(resized[8:24]), rtol=0, atol=1e-6)
    assert dataset_labels(ds) is None


def test_image_folder_greyscale(folder):
    root, arrays = folder
    x, _ = build_dataset(str(root), 16, channels=1)[1]
    grey = np.array(Image.fromarray(arrays["a/exact.png"]).convert("L"))
    assert x.shape == (1, 16, 16)
    torch.testing.assert_close(x, _to_unit(grey[:, 4:20]), rtol=0, atol=1e-6)


def test_image_folder_labels_csv(folder):
    root, _ = folder
    (root / "labels.csv").write_text("filename,label\na/exact.png,3\n./tall.png,7\nnot/there.png,1\n")
    ds = build_dataset(str(root), 16)
    assert [ds[i][1] for i in range(3)] == [-1, 3, 7]  # wide.PNG is not listed
    np.testing.assert_array_equal(dataset_labels(torch.utils.data.Subset(ds, [2, 1])), [7, 3])
    (root / "labels.csv").write_text("filename,label\nexact.png,3\n")
    with pytest.raises(ValueError, match="relative to that folder"):
        build_dataset(str(root), 16)
    (root / "labels.csv").write_text("file,class\na/exact.png,3\n")
    with pytest.raises(ValueError, match="filename,label"):
        build_dataset(str(root), 16)
    (root / "labels.csv").write_text("filename,label\na/exact.png,cat\n")
    with pytest.raises(ValueError, match="line 2.*'cat'"):
        build_dataset(str(root), 16)


def test_image_folder_too_small(folder):
    root, _ = folder
    _png(root / "small.png", np.zeros((10, 20, 3), np.uint8))
    with pytest.raises(ValueError, match=r"small\.png is 20x10.*resolution <= 10.*--allow-upscale"):
        build_dataset(str(root), 16)
    ds = build_dataset(str(root), 16, allow_upscale=True)
    assert ds[3][0].shape == (3, 16, 16)


def test_image_folder_errors(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*'digits'.*cifar-10-batches-py.*folder"):
        build_dataset(str(tmp_path / "nowhere"), 16)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no images in .*empty"):
        build_dataset(str(tmp_path / "empty"), 16)
    root, _ = folder
    (root / "junk.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"junk\.png.*corrupt"):
        build_dataset(str(root), 16)
    (root / "junk.png").unlink()
    good = (root / "tall.png").read_bytes()
    (root / "tall.png").write_bytes(good[: len(good) // 2])  # header intact, pixel data cut
    ds = build_dataset(str(root), 16)
    with pytest.raises(ValueError, match=r"tall\.png.*corrupt"):
        ds[2]


def test_image_folder_pickles_into_workers(folder):
    root, _ = folder
    ds = build_dataset(str(root), 16)
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[0][0], ds[0][0])
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    images, labels = next(iter(loader))
    assert images.shape == (3, 3, 16, 16) and labels.tolist() == [-1, -1, -1]
    torch.testing.assert_close(images[1], ds[1][0])


# --- random_hflip ------------------------------------------------------------------------------
def test_random_hflip_reproducible_and_exact():
    x = torch.randn(64, 3, 4, 5)
    g = torch.Generator().manual_seed(123)
    state = g.get_state()
    out = random_hflip(x, g)
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(64)])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(64)])
    assert torch.all(flipped ^ kept)  # every image is exactly itself or exactly its mirror
    assert 10 < int(flipped.sum()) < 54
    chosen = torch.randint(0, 2, (64,), generator=torch.Generator().manual_seed(123)).bool()
    assert torch.equal(flipped, chosen)  # documented contract: N draws of randint(0, 2)
    g.set_state(state)
    assert torch.equal(random_hflip(x, g), out)  # resume from a saved generator state
    assert not torch.equal(random_hflip(x, torch.Generator().manual_seed(124)), out)


# --- data sets that would hang or fail late (regression: reliability review, section 2) --------------
def _image_folder(root, n=6):
    from PIL import Image
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((32, 32, 3), 20 * i, np.uint8)).save(root / f"{i}.png")
    return root


def test_fifo_in_an_image_folder_is_skipped_not_waited_on(tmp_path, caplog):
    """Defect 15: one named pipe in an image folder hung pdgan-train at data set construction."""
    from pdgan_train.data import DataError, _open_image, build_dataset
    root = _image_folder(tmp_path / "ds")
    os.mkfifo(root / "zz_pipe.png")
    ds = in_thread(lambda: build_dataset(str(root), 32), [root / "zz_pipe.png"], timeout=60)
    assert len(ds) == 6 and "not regular files" in caplog.text
    with pytest.raises(DataError, match="not a regular file"):
        _open_image(str(root / "zz_pipe.png"))


def test_check_images_decodes_every_image_at_start(tmp_path):
    """Defect 11: a PNG truncated after its header passed the start-up check and stopped training hours
    later; `check_images` (--check-images) decodes everything first."""
    from pdgan_train.data import build_dataset
    root = _image_folder(tmp_path / "ds")
    from PIL import Image
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / "zz.png")
    data = (root / "zz.png").read_bytes()
    (root / "zz.png").write_bytes(data[: len(data) // 2])
    assert len(build_dataset(str(root), 32)) == 7  # headers only: passes
    with pytest.raises(ValueError, match=r"zz\.png.*truncated"):
        build_dataset(str(root), 32, check_images=True)


def test_cifar_batch_errors_are_pdgan_errors(tmp_path):
    """Defect 12: a CIFAR batch that is not a dict raised a bare TypeError, a malicious one an
    UnsafePickleError that the CLI did not catch (traceback)."""
    from pdgan_train.data import UnsafePickleError, build_dataset
    assert issubclass(UnsafePickleError, PDGANError) and issubclass(UnsafePickleError, pickle.UnpicklingError)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (d / name).write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(PDGANError, match=r"data_batch_1 is not a CIFAR-10 batch: it holds a list.*re-extract"):
        build_dataset(str(d), 32)
