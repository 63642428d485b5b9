"""pdgan_train.references: FID reference files with and without pdgan's extra keys, header checks, and
--fid-ref URLs downloaded once into the cache (file:// URLs: no network), checked by sha256."""
from __future__ import annotations

import hashlib
import logging

import numpy as np
import pytest
from npz_files import fake_npz

from pdgan_train import references as refs
from pdgan_train._download import HashMismatchError
from pdgan_train.eval import EvalError


@pytest.fixture
def ref_file(tmp_path):
    mu, sigma = np.arange(3.0), np.diag([1.0, 2.0, 3.0])
    return refs.write_ref(tmp_path / "ref.npz", mu, sigma, n=10, detector_sha256="ab" * 32, data="digits")


def test_extra_keys_round_trip_and_plain_files_still_load(tmp_path, ref_file):
    with np.load(ref_file, allow_pickle=False) as f:  # what pytorch-fid / EDM readers see: mu and sigma as ever
        np.testing.assert_array_equal(f["mu"], np.arange(3.0))
        assert sorted(f.files) == ["data", "detector_sha256", "mu", "n", "sigma"]
    got = refs.load_ref(ref_file)
    assert (got["n"], got["detector_sha256"], got["data"]) == (10, "ab" * 32, "digits")
    np.savez_compressed(tmp_path / "pytorch-fid.npz", mu=np.ones(3, np.float32), sigma=np.eye(3, dtype=np.float32))
    old = refs.load_ref(tmp_path / "pytorch-fid.npz")
    assert set(old) == {"mu", "sigma"} and old["mu"].dtype == np.float64


def test_shapes_are_checked_from_the_headers(tmp_path):
    np.savez(tmp_path / "skew.npz", mu=np.zeros(3), sigma=np.zeros((3, 4)))
    np.savez(tmp_path / "nan.npz", mu=np.full(2, np.nan), sigma=np.eye(2))
    fake_npz(tmp_path / "huge.npz", "mu", (10 ** 6,), "<f8")  # refused before anything is read
    for name, match in (("skew.npz", r"sigma \(D, D\)"), ("nan.npz", "NaN"), ("huge.npz", "not 'mu' and 'sigma'")):
        with pytest.raises(EvalError, match=match):
            refs.load_ref(tmp_path / name)


def test_url_downloaded_once_and_checked(tmp_path, ref_file, monkeypatch, caplog):
    monkeypatch.setenv("PDGAN_CACHE", str(tmp_path / "cache"))
    digest = hashlib.sha256(ref_file.read_bytes()).hexdigest()
    url = ref_file.as_uri()
    assert refs.resolve_ref(ref_file) == ref_file and not refs.is_url(ref_file) and refs.is_url(url)
    local = refs.resolve_ref(f"{url}#sha256={digest}", progress=False)
    assert local.parent == tmp_path / "cache" / "fid-refs" and local.read_bytes() == ref_file.read_bytes()
    with pytest.raises(HashMismatchError, match=f"expected {'0' * 64}, got {digest}"):
        refs.resolve_ref(f"{url}#sha256={'0' * 64}", progress=False)
    with pytest.raises(EvalError, match="sha256=<64 hex digits>"):
        refs.resolve_ref(f"{url}#md5=1", progress=False)
    with caplog.at_level(logging.WARNING, logger="pdgan"):
        unpinned = refs.resolve_ref(url, progress=False)
    assert f"its sha256 is {digest}" in caplog.text and f"{url}#sha256=" in caplog.text
    ref_file.unlink()  # both are cached: no second download
    assert refs.resolve_ref(f"{url}#sha256={digest}", progress=False) == local
    assert refs.resolve_ref(url, progress=False) == unpinned and unpinned.is_file()


def _npz_declaring(path, shapes: dict[str, tuple[int, ...]]) -> None:
    """An .npz whose members carry a valid .npy header declaring `shapes` (float64) but only 64 bytes of data."""
    import io
    import zipfile
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, shape in shapes.items():
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
            z.writestr(f"{name}.npy", buf.getvalue() + bytes(64))


def test_fid_ref_headers_are_checked_before_the_data(tmp_path, monkeypatch):
    """A small file declaring a (10**5, 10**5) sigma (80 GB) is refused from its header: np.load never runs."""
    huge = tmp_path / "huge.npz"
    _npz_declaring(huge, {"mu": (100_000,), "sigma": (100_000, 100_000)})
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("the data was read"))
    with pytest.raises(EvalError, match=rf"D <= {refs.MAX_DIM}, got float64 \(100000,\) and float64 "):
        refs.load_ref(huge)
    _npz_declaring(tmp_path / "odd.npz", {"mu": (4,), "sigma": (4, 5)})
    with pytest.raises(EvalError, match=r"sigma \(D, D\)"):
        refs.load_ref(tmp_path / "odd.npz")


def test_fid_ref_that_is_not_an_npz_is_named_as_such(tmp_path):
    np.save(tmp_path / "mu.npy", np.zeros(4))
    with pytest.raises(EvalError, match=r"mu.npy is not an .npz file"):
        refs.load_ref(tmp_path / "mu.npy")
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(EvalError, match="folder"):
        refs.load_ref(tmp_path / "folder.npz")
