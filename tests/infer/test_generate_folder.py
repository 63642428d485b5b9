"""pdgan_infer.generate's folder rules without a model: where images go (--subdirs as EDM), and which
folders a run may resume into (the manifest), with hand-written manifests."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pdgan_infer.generate import MANIFEST, GenerateError, _remove_images, check_folder, png_path

BASE = {"format": "pdgan-generate/1", "version": "0", "model": "m", "weights_sha256": "a" * 64,
        "config": {"preset": "digits", "T": 2}, "backend": "native", "dtype": "float32", "seed_rule": "rule",
        "subdirs": False, "image_shape": [32, 32, 3]}


def test_png_path():
    out = Path("o")
    assert png_path(out, 5) == out / "000005.png"
    assert png_path(out, 1999, subdirs=True) == out / "001000" / "001999.png"
    assert png_path(out, 123456, subdirs=True) == out / "123000" / "123456.png"


@pytest.mark.parametrize("key, value, message", [
    ("weights_sha256", "b" * 64, "another model (weights sha256) (aaaaaaaaaaaa there, bbbbbbbbbbbb now)"),
    ("config", {"preset": "digits", "T": 4}, "another model configuration (T differ)"),
    ("dtype", "bfloat16", "another dtype ('float32' there, 'bfloat16' now)"),
    ("backend", "torch", "another backend ('native' there, 'torch' now)"),
    ("seed_rule", "other", "another seed rule"),
    ("subdirs", True, "another layout (--subdirs)"),
])
def test_a_different_writer_is_refused(tmp_path, key, value, message):
    (tmp_path / MANIFEST).write_text(json.dumps(BASE))
    check_folder(tmp_path, dict(BASE))  # the same writer
    check_folder(tmp_path, {**BASE, "version": "9", "model": "elsewhere/m"})  # informative entries only
    with pytest.raises(GenerateError, match="--overwrite") as err:
        check_folder(tmp_path, {**BASE, key: value})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_folders_without_a_manifest(tmp_path):
    check_folder(tmp_path / "new", BASE)
    (tmp_path / "notes.txt").write_text("x")
    check_folder(tmp_path, BASE)  # no images: fine
    (tmp_path / "001000").mkdir()
    (tmp_path / "001000" / "001234.png").write_bytes(b"")
    with pytest.raises(GenerateError, match=r"holds 1 image file\(s\) \(e.g. 001234.png\) but no pdgan-generate.json"):
        check_folder(tmp_path, BASE)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(GenerateError, match="is not readable"):
        check_folder(tmp_path, BASE)


def test_overwrite_removes_only_pdgan_names(tmp_path):
    for name in ("000001.png", "images.npz", "cat.png", "000002.jpg", "001000/001001.png", "001000/x.png",
                 "002000/002000.png", "other/000003.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    _remove_images(tmp_path)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["000002.jpg", "001000/x.png", "cat.png", "other/000003.png"]
    assert not (tmp_path / "002000").exists()  # emptied seed folders go too
