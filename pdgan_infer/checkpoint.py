"""Checkpoints: `NAME.safetensors` (weights, keys prefixed by component: `generator.`, `encoder.`,
`latent.`) and `NAME.json` beside it (format, pdgan version, config, components, sha256 of the
weights, free-form metadata). The same JSON is embedded in the safetensors header, so a lone weights
file still loads. Writes are atomic (temporary file + rename). Nothing is ever unpickled.

The safetensors metadata is {"format": "pt", "pdgan": <the JSON>}: "format": "pt" is what Hugging Face
loaders (`huggingface_hub.load_torch_model`, transformers) require. A model folder written by
`save_pretrained` (`pdgan_infer.hub`) holds `model.safetensors` + `config.json` (the same JSON) +
`README.md`; `load_checkpoint(DIR)` reads it, as it reads a pdgan-train run directory
(`model.safetensors` + `model.json`).

`atomic_path` / `atomic_write_bytes` are the project's one way to replace a file atomically.

Loading validates and names what is wrong in one line (`CheckpointError`, a ValueError): missing or
unreadable file, truncated/corrupt weights (sha256 or header check), unknown or unexpected preset,
missing or unexpected keys, shape mismatches.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._version import __version__
from .config import PRESETS, PDGANConfig
from .errors import PDGANError
from .networks import LATENT_SLOTS, PDGAN

FORMAT = "pdgan-checkpoint"
FOLDER_CONFIG = "config.json"  # the sidecar of a save_pretrained folder (a run directory has model.json)


class CheckpointError(PDGANError, ValueError):
    """A checkpoint could not be loaded; the message names the file and the problem."""


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, JSON sidecar) of a checkpoint given as NAME, NAME.safetensors, NAME.json or a folder
    (model.safetensors with model.json, else config.json, beside it)."""
    p = Path(path)
    if p.is_dir():
        if not (p / "model.json").exists() and (p / FOLDER_CONFIG).exists():
            return p / "model.safetensors", p / FOLDER_CONFIG
        p = p / "model.safetensors"
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    elif p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors")
    return p, p.with_suffix(".json")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Write to the yielded temporary path (same folder, so the rename is atomic); on success it
    replaces `path` (fsynced, mode 0644), on any exception it is removed and `path` is untouched.
    `suffix` matters to writers that add or check one (np.savez wants ".npz")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_checkpoint(model: PDGAN, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write `model` (generator, encoder and, if present, latent) to PATH.safetensors + PATH.json.
    Returns the weights path. Both files are replaced atomically."""
    weights, config_path = _paths(path)
    return write_checkpoint(model, weights, config_path, meta)


def write_checkpoint(model: PDGAN, weights: Path, config_path: Path, meta: dict[str, Any] | None = None) -> Path:
    """The weights (metadata {"format": "pt", "pdgan": header}) and the header + sha256 as JSON."""
    tensors = {f"{name}.{k}": v.detach().cpu().contiguous()
               for name in model.components for k, v in getattr(model, name).state_dict().items()}
    header = {"format": FORMAT, "version": __version__, "config": model.config.to_dict(),
              "components": model.components, "latent_slot": model.latent_slot, "meta": meta or {}}
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "pdgan": json.dumps(header, sort_keys=True)})
        digest = sha256_file(tmp)
    atomic_write_bytes(config_path, (json.dumps({**header, "sha256": digest}, indent=2, sort_keys=True)
                                     + "\n").encode())
    return weights


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's JSON (from NAME.json, else from the safetensors header), validated."""
    weights, config_path = _paths(path)
    if not weights.exists():
        raise CheckpointError(f"checkpoint not found: {weights} (expected NAME.safetensors with NAME.json beside it)")
    if config_path.exists():
        try:
            header = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"checkpoint config {config_path} is not valid JSON ({e}); "
                                  "re-export the checkpoint") from None
    else:
        header = _embedded_header(weights)
    if config_path.name == FOLDER_CONFIG and isinstance(header, dict) and header.get("format") != FORMAT:
        header = _embedded_header(weights)  # a folder whose config.json is someone else's (e.g. a run's)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{config_path} is not a pdgan checkpoint config (format != {FORMAT!r})")
    preset = header.get("config", {}).get("preset")
    if preset not in PRESETS:
        raise CheckpointError(f"checkpoint {weights} names unknown preset {preset!r}; known: {sorted(PRESETS)}")
    return header


def _embedded_header(weights: Path) -> dict[str, Any]:
    try:
        from safetensors import safe_open
        with safe_open(str(weights), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"checkpoint {weights} is truncated or corrupt ({_short(e)}); "
                              "re-download or re-export it") from None
    if "pdgan" not in meta:
        raise CheckpointError(f"{weights} has no pdgan config (no {weights.with_suffix('.json').name} and no "
                              "embedded header); it was not written by pdgan")
    return json.loads(meta["pdgan"])


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    preset: str | None = None) -> PDGAN:
    """Load a checkpoint into a fresh `PDGAN` (eval mode). `preset`, if given, must match."""
    weights, _ = _paths(path)
    header = read_header(weights)
    cfg = PDGANConfig.from_dict(header["config"])
    if preset is not None and cfg.preset != preset:
        raise CheckpointError(f"checkpoint {weights} is for preset {cfg.preset!r}, not {preset!r}")
    if "sha256" in header and sha256_file(weights) != header["sha256"]:
        raise CheckpointError(f"checkpoint {weights} is truncated or corrupt (sha256 differs from "
                              f"{weights.with_suffix('.json').name}); re-download or re-export it")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {weights} is truncated or corrupt ({_short(e)}); "
                              "re-download or re-export it") from None
    components = header.get("components", ["generator", "encoder"])
    model = PDGAN(cfg, with_latent="latent" in components)
    model.latent_slot = _latent_slot(header, weights)
    expected = {f"{name}.{k}": v for name in model.components for k, v in getattr(model, name).state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        raise CheckpointError(f"checkpoint {weights} lacks {len(missing)} tensors, e.g. {missing[:3]}")
    if unexpected:
        raise CheckpointError(f"checkpoint {weights} has {len(unexpected)} unexpected tensors, e.g. {unexpected[:3]}")
    for k, v in tensors.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(f"checkpoint {weights}: shape mismatch for {k}: file {tuple(v.shape)} vs "
                                  f"model {tuple(expected[k].shape)} (config and weights disagree)")
    for name in model.components:
        prefix = name + "."
        getattr(model, name).load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    model.checkpoint_meta = header.get("meta", {})  # for save_pretrained's model card
    return model.to(device).eval()


def _latent_slot(header: dict[str, Any], weights: Path) -> str:
    """The header's latent_slot; older checkpoints: the training run's --encoder (default "first")."""
    slot = header.get("latent_slot")
    if slot is None:
        slot = (header.get("meta", {}).get("train_config") or {}).get("encoder", "first")
    if slot not in LATENT_SLOTS:
        raise CheckpointError(f"checkpoint {weights}: latent_slot {slot!r} is not one of {list(LATENT_SLOTS)}")
    return slot


def _short(e: BaseException) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
