"""pdgan_train.image_sets: folders and .npz files of images read a range at a time, compared with the
arrays written by numpy / Pillow; .npz headers checked before any data is read."""
from __future__ import annotations

import numpy as np
import pytest
from npz_files import fake_npz
from PIL import Image

from pdgan_train.image_sets import MAX_IMAGES, ImageSetError, npz_arrays, open_image_set

RNG = np.random.default_rng(0)


def test_folder_in_path_order_as_rgb(tmp_path):
    images = RNG.integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    names = ["b/000003.png", "a.png", "b/000001.png", "c/d/e.png", "z.jpg.png"]
    for name, img in zip(names, images):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    Image.fromarray(images[0, :, :, 0]).save(tmp_path / ".hidden.png")  # hidden: skipped
    s = open_image_set(tmp_path)
    assert (s.count, s.shape) == (5, (6, 7, 3))
    order = [names.index(n) for n in sorted(names)]
    np.testing.assert_array_equal(s.read(0, 5), images[order])
    np.testing.assert_array_equal(s.read(2, 4), images[order][2:4])
    Image.fromarray(images[0, :, :, 0]).save(tmp_path / "grey.png")  # greyscale is read as RGB
    s = open_image_set(tmp_path)
    grey = s.read(*[(i, i + 1) for i, f in enumerate(s.files) if f.name == "grey.png"][0])[0]
    assert grey.shape == (6, 7, 3) and (grey == images[0, :, :, :1]).all()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(ImageSetError, match="wide.png is 8x6, the other images .* are 7x6"):
        open_image_set(tmp_path).read(0, 7)


def test_npz_keys_and_ranges(tmp_path):
    a = RNG.integers(0, 256, (9, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "gen.npz", images=a, arr_0=a[::-1], seeds=np.arange(9))
    s = open_image_set(tmp_path / "gen.npz")
    assert (s.key, s.count, s.shape) == ("images", 9, (4, 4, 3))  # `images` first
    np.testing.assert_array_equal(s.read(3, 8), a[3:8])
    np.savez_compressed(tmp_path / "adm.npz", arr_0=a[:, :, :, :1])  # ADM's key, compressed, one channel
    s = open_image_set(tmp_path / "adm.npz")
    assert s.key == "arr_0" and s.shape == (4, 4, 1)
    np.testing.assert_array_equal(s.read(7, 9), a[7:9, :, :, :1])
    assert npz_arrays(tmp_path / "gen.npz")["seeds"][:2] == ((9,), np.dtype(np.int64))


@pytest.mark.parametrize("shape, descr, match", [
    ((10 ** 6, 32, 32, 3), "|u1", "claims shape .* holds only"),  # a header bigger than its member
    ((MAX_IMAGES + 1, 1, 1, 3), "|u1", "at most"),
    ((1, 1 << 20, 1, 3), "|u1", "at most"),
    ((0, 4, 4, 3), "|u1", "at least one"),
    ((2, 4, 4, 3), "<f4", "expected uint8 images"),
    ((2, 4, 4), "|u1", "expected uint8 images"),
    ((2, 4, 4, 4), "|u1", "C = 1 or 3"),
])
def test_npz_headers_are_checked_before_the_data(tmp_path, shape, descr, match):
    fake_npz(tmp_path / "x.npz", "images", shape, descr)
    with pytest.raises(ImageSetError, match=match):
        open_image_set(tmp_path / "x.npz")


def test_unreadable_sets(tmp_path):
    np.savez(tmp_path / "stats.npz", mu=np.zeros(3))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    (tmp_path / "empty").mkdir()
    for path, match in ((tmp_path / "stats.npz", r"has arrays \['mu'\], none of images or arr_0"),
                        (tmp_path / "junk.npz", "is not an .npz file"), (tmp_path / "none", "not found"),
                        (tmp_path / "empty", "no images in it")):
        with pytest.raises(ImageSetError, match=match):
            open_image_set(path)
