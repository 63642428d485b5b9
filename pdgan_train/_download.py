"""Downloading pretrained helper networks (VGG16 for the feature loss, Inception/VGG16 for metrics).

`download_file` is `torch.hub.download_url_to_file` (a `.partial` file beside the destination, the
SHA-256 checked, then a move into place, so an interrupted or tampered download never leaves a file at
`dest`) given the full SHA-256, with pdgan's errors: `DownloadError` for network and file-system
failures, `HashMismatchError` naming the expected and the actual digest. `cache_dir` is
`pdgan_infer.hub.cache_dir`: the argument, else `$PDGAN_CACHE`, else `$XDG_CACHE_HOME/pdgan`, else
`~/.cache/pdgan`.
"""
from __future__ import annotations

import http.client
import os
import re
import urllib.error
from pathlib import Path

from pdgan_infer.checkpoint import sha256_file  # noqa: F401  (re-exported: one hashing helper)
from pdgan_infer.errors import PDGANError
from pdgan_infer.hub import CACHE_ENV, cache_dir  # noqa: F401  (re-exported: one cache directory)

_TORCH_HASH = re.compile(r'invalid hash value \(expected "([0-9a-f]*)", got "([0-9a-f]*)"\)')


class DownloadError(PDGANError, RuntimeError):
    """A download could not be completed (network, file system or hash check)."""


class HashMismatchError(DownloadError):
    """The downloaded bytes do not have the expected SHA-256."""


def download_file(url: str, dest: str | os.PathLike[str], sha256: str | None = None,
                  sha256_prefix: str | None = None, progress: bool = True) -> Path:
    """Download `url` to `dest` and return `dest` as a Path.

    The SHA-256 of the bytes is checked against `sha256` (the full hex digest; give it whenever it is
    known) and/or `sha256_prefix` (e.g. the 8 hex digits torchvision puts in file names) before the
    file is moved into place; on any failure nothing is left at `dest`. `progress`: torch.hub's bar on a
    terminal or in a notebook, a start and an end line elsewhere (`pdgan_infer.progress`), nothing when False.
    """
    import torch.hub

    from pdgan_infer.progress import Progress, mode

    dest = Path(dest)
    full, prefix = (sha256 or "").lower() or None, (sha256_prefix or "").lower() or None
    if full and prefix and not full.startswith(prefix):
        raise HashMismatchError(f"SHA-256 for {url}: the expected digest {full} does not start with {prefix}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        shown = mode(progress)
        with Progress(None, f"download {url}", show=shown == "log"):
            torch.hub.download_url_to_file(url, str(dest), hash_prefix=full or prefix, progress=shown == "bar")
    except RuntimeError as err:
        m = _TORCH_HASH.search(str(err))
        if m is None:
            raise
        got = m.group(2)
        if full:
            raise HashMismatchError(f"SHA-256 mismatch for {url}: expected {full}, got {got}") from None
        raise HashMismatchError(f"SHA-256 mismatch for {url}: expected a hash starting with {prefix}, "
                                f"got {got}") from None
    except (urllib.error.URLError, ValueError) as err:
        raise DownloadError(f"could not download {url}: {getattr(err, 'reason', err)}") from None
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(f"download of {url} failed: {err!r}") from None
    return dest
