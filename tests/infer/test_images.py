"""pdgan_infer.images writes with Pillow; these tests decode with Pillow (an independent reader)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pdgan_infer.images import encode_png, load_image, make_grid, save_grid, save_png


def test_png_round_trips_through_pillow(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    with Image.open(save_png(rgb, tmp_path / "sub" / "rgb.png")) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (7, 5))
        np.testing.assert_array_equal(np.asarray(im), rgb)
    with Image.open(io.BytesIO(encode_png(grey[:, :, None]))) as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), grey)
    np.testing.assert_array_equal(load_image(tmp_path / "sub" / "rgb.png"), rgb)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [".pdgan-files", "rgb.png"]  # no temporary left
    with pytest.raises(ValueError, match="uint8"):
        save_png(rgb.astype(np.float32), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_grid_layout(tmp_path):
    images = np.stack([np.full((2, 3, 3), 10 * (i + 1), np.uint8) for i in range(5)])
    grid = make_grid(images, nrow=3, pad=1)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1, 3)
    assert grid[1, 1, 0] == 10 and grid[1, 5, 0] == 20 and grid[4, 5, 0] == 50 and grid[4, 9, 0] == 255
    with Image.open(save_grid(images, tmp_path / "g.png", nrow=3, pad=1)) as im:
        np.testing.assert_array_equal(np.asarray(im), grid)


def test_output_types_hold_the_same_image():
    """as_output_type against hand conversions: PIL pixels as decoded by Pillow, "pt" = uint8 / 255 in NCHW."""
    import torch

    from pdgan_infer.images import as_output_type
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    images[0, 0, 0] = (0, 255, 128)
    assert as_output_type(images, "np") is images
    pils = as_output_type(images, "pil")
    assert isinstance(pils, list) and len(pils) == 3
    for pil, image in zip(pils, images):
        assert (pil.mode, pil.size) == ("RGB", (7, 5))
        np.testing.assert_array_equal(np.asarray(pil), image)
    pt = as_output_type(images, "pt")
    assert pt.dtype == torch.float32 and tuple(pt.shape) == (3, 3, 5, 7) and pt.is_contiguous()
    want = images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(pt.numpy(), want)
    assert float(pt.min()) == 0.0 and float(pt.max()) == 1.0
    np.testing.assert_array_equal((pt * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), images)
    with pytest.raises(ValueError, match=r"unknown output_type 'latent'; choose 'np' .* 'pil' .* 'pt'"):
        as_output_type(images, "latent")
