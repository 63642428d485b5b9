"""The export cache: the sampler graph (or another graph) exported once per weights, config, dtype, opset and
torch version under `cache_dir` (default `pdgan_infer.hub.cache_dir()`: $PDGAN_CACHE or ~/.cache/pdgan), its
sha256 recorded beside it and checked before reuse. The record and the metadata can be rewritten by whoever
can write the cache, so a cached graph is also run on one seed against torch (the export's own verification,
`onnx.verify_against_torch`, batch 1) before it is used (once per process while the file is unchanged). A
cached file that is corrupt, was written for other weights or computes other images is re-exported (with a
warning), never trusted. The exported-graph backends
(`pdgan_infer.backends`: onnxruntime, tensorrt, openvino) load their graphs from here.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch

from ..checkpoint import OutputPathError, atomic_write_bytes, sha256_file
from ..networks import PDGAN
from .onnx import (
    DTYPES,
    OPSET,
    OnnxLoadError,
    OnnxRunner,
    export_onnx,
    preferred_exporter,
    read_metadata,
    verify_against_torch,
    weights_sha256,
)

EXPORT_REVISION = 2  # bump when the exported graph changes for the same weights and config (2: batch-first z, eps)


def default_cache_dir() -> Path:
    """pdgan's one cache (`pdgan_infer.hub.cache_dir`: $PDGAN_CACHE, $XDG_CACHE_HOME/pdgan, ~/.cache/pdgan);
    the old $PDGAN_CACHE_DIR is still honoured, with a DeprecationWarning."""
    from ..hub import cache_dir

    if os.environ.get("PDGAN_CACHE_DIR"):
        warnings.warn("PDGAN_CACHE_DIR is deprecated: set PDGAN_CACHE (one cache for every pdgan file)",
                      DeprecationWarning, stacklevel=2)
        return Path(os.environ["PDGAN_CACHE_DIR"])
    return cache_dir()


def onnx_cache_key(weights_hash: str, config_json: str, dtype: str, graph: str = "sampler") -> str:
    """Hex key of an exported graph: changes with the weights, config, dtype, graph, opset, torch, and the exporter
    that would write it (a TorchScript fallback is re-exported once onnxscript is installed)."""
    torch_mm = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    fields = {"weights": weights_hash, "config": json.loads(config_json), "dtype": dtype, "graph": graph,
              "opset": OPSET, "torch": torch_mm, "revision": EXPORT_REVISION, "exporter": preferred_exporter()}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def cached_onnx(model: PDGAN, dtype: str, cache_dir: str | os.PathLike | None = None,
                graph: str = "sampler", force: bool = False) -> tuple[Path, str]:
    """(path, weights hash) of the exported `graph`, exporting it unless a valid cached copy exists
    (`force`: export anyway). Valid: the file's sha256 is the one recorded beside it (NAME.onnx.json)
    when it was exported, its metadata names these weights and this dtype, and on one seed it computes
    what torch computes. Anything else is re-exported with a warning."""
    wsha = weights_sha256(model.generator)
    key = onnx_cache_key(wsha, model.config.to_json(), dtype, graph)
    path = _cache_folder(cache_dir) / f"{model.config.preset}-{graph}-{dtype}-{key[:16]}.onnx"
    record = cache_record_path(path)
    for p in (path, record):
        if p.is_dir():
            raise OutputPathError(f"the export cache entry {p} is a folder; remove it, or point $PDGAN_CACHE "
                                  "(or export_cache_dir=) at another folder")
    if path.exists() and not force:
        reason = _cache_problem(model, graph, path, record, wsha, dtype)
        if reason is None:
            return path, wsha
        warnings.warn(f"re-exporting the cached graph {path}: {reason}", stacklevel=3)
    export_onnx(model, path, graph, dtype, verify=False)
    atomic_write_bytes(record, (json.dumps({"sha256": sha256_file(path), "key": key}, indent=2) + "\n").encode())
    return path, wsha


def cache_record_path(onnx_path: str | os.PathLike) -> Path:
    """NAME.onnx.json: the sha256 of a cached export, recorded when it was written."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".json")


def _cache_folder(cache_dir: str | os.PathLike | None) -> Path:
    base = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = base / "onnx"
    for p in (base, folder):
        if p.exists() and not p.is_dir():
            raise OutputPathError(f"the pdgan cache {p} is a file, not a folder; remove it, or point $PDGAN_CACHE "
                                  "(or export_cache_dir=) at another folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"cannot create the export cache folder {folder} ({e.strerror or e}); point "
                              "$PDGAN_CACHE (or export_cache_dir=) at a writable folder") from None
    return folder


def _cache_problem(model: PDGAN, graph: str, path: Path, record: Path, wsha: str, dtype: str) -> str | None:
    """Why a cached export cannot be used, or None. The content is checked first (a file whose metadata
    was rewritten to name these weights must not pass), then the graph is run on one seed against torch (a
    file whose weights were changed and whose record and metadata were rewritten must not pass either)."""
    try:
        recorded = json.loads(record.read_text()).get("sha256") if record.is_file() else None
    except (OSError, ValueError, AttributeError):
        recorded = None
    if not isinstance(recorded, str):
        return f"no record of its sha256 ({record.name})"
    try:
        if sha256_file(path) != recorded:
            return f"its content is not what was exported (sha256 differs from {record.name})"
        meta = read_metadata(path)
    except (OSError, OnnxLoadError) as e:
        return str(e)
    if meta.get("pdgan.weights_sha256") != wsha or meta.get("pdgan.dtype") != dtype:
        return "it was exported from other weights"
    st = os.stat(path)
    seen = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, wsha, dtype, graph)
    if seen in _VERIFIED:  # checked by this process, and the file has not changed since
        return None
    try:
        errs, tols, _ = verify_against_torch(OnnxRunner(path), model, graph, DTYPES[dtype], (1,))
    except Exception as e:  # noqa: BLE001 - whatever a damaged graph makes onnxruntime raise: re-export it
        return f"it does not run ({type(e).__name__}: {str(e).strip()[:200]})"
    if not errs[1] <= tols[1]:
        return (f"on one seed it differs from torch by {errs[1]:.3g} (tolerance {tols[1]:.3g}): its weights are "
                "not these")
    _VERIFIED.add(seen)
    return None


_VERIFIED: set[tuple] = set()  # cached graphs this process ran its one-seed check on (path, inode, size, mtime, ...)
