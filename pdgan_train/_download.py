"""Downloading pretrained helper networks (VGG16 for the feature loss, later Inception for FID).

`download_file` streams a URL to a temporary file beside the destination, hashes it on the way,
checks the hash and only then renames it into place with `os.replace`, so an interrupted or
tampered download never leaves a file at `dest`. `cache_dir` is the one place that decides where
such files live: the argument, else `$PDGAN_CACHE`, else `~/.cache/pdgan`.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from pdgan_infer.checkpoint import sha256_file  # noqa: F401  (re-exported: one hashing helper)

CACHE_ENV = "PDGAN_CACHE"
_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download could not be completed (network, file system or hash check)."""


class HashMismatchError(DownloadError):
    """The downloaded bytes do not have the expected SHA-256."""


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Directory for downloaded networks: `override`, else `$PDGAN_CACHE`, else `~/.cache/pdgan`."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "pdgan"


def _check_hash(got: str, url: str, sha256: str | None, sha256_prefix: str | None) -> None:
    if sha256 is not None and got != sha256.lower():
        raise HashMismatchError(f"SHA-256 mismatch for {url}: expected {sha256.lower()}, got {got}")
    if sha256_prefix is not None and not got.startswith(sha256_prefix.lower()):
        raise HashMismatchError(
            f"SHA-256 mismatch for {url}: expected a hash starting with {sha256_prefix.lower()}, got {got}")


def download_file(url: str, dest: str | os.PathLike[str], sha256: str | None = None,
                  sha256_prefix: str | None = None, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` and return `dest` as a Path.

    The bytes go to a temporary file in `dest`'s directory; the SHA-256 is checked against `sha256`
    (full hex digest) and/or `sha256_prefix` (e.g. the 8 hex digits torchvision puts in file names)
    before an atomic `os.replace`. On any failure the temporary file is removed and nothing is left
    at `dest`; network and file-system failures raise `DownloadError`, a wrong hash raises
    `HashMismatchError` naming the expected and the actual digest.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, OSError, ValueError) as err:
                reason = getattr(err, "reason", err)
                raise DownloadError(f"could not download {url}: {reason}") from None
            with response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                received = 0
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=dest.name, disable=not progress) as bar:
                    while True:
                        try:
                            chunk = response.read(_CHUNK)
                        except (OSError, http.client.HTTPException) as err:
                            raise DownloadError(f"download of {url} interrupted: {err!r}") from None
                        if not chunk:
                            break
                        out.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
                        received += len(chunk)
                if total is not None and received != total:
                    raise DownloadError(f"download of {url} ended after {received} of {total} bytes")
        _check_hash(h.hexdigest(), url, sha256, sha256_prefix)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a shared cache should be readable
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
