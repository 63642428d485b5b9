"""Checkpoints: `NAME.safetensors` (weights, keys prefixed by component: `generator.`, `encoder.`,
`latent.`) and `NAME.json` beside it (format, pdgan version, config, components, latent slot,
free-form metadata, the file's sha256 and the content digest). Nothing is ever unpickled.

The weights file is self-contained and authoritative. Its safetensors metadata is
{"format": "pt", "pdgan": <the JSON header>, "pdgan.content_sha256": <digest>}, where the digest is
`content_sha256(header, tensors)`: sha256 over the header string and every tensor's name, dtype, shape
and bytes. The loader verifies it, so a flipped byte is caught without the sidecar, and NAME.json is a
readable copy: if it does not describe the weights (a write killed between the two renames, a hand
edit) it is ignored with a warning. Older checkpoints without the digest load as before: the sidecar
wins and its file sha256, when it has one, must match. "format": "pt" is what Hugging Face loaders
(`huggingface_hub.load_torch_model`, transformers) require. A model folder written by
`save_pretrained` (`pdgan_infer.hub`) holds `model.safetensors` + `config.json` (the same JSON) +
`README.md`; `load_checkpoint(DIR)` reads it, as it reads a pdgan-train run directory
(`model.safetensors` + `model.json`).

Writes: the weights, then the sidecar, each atomically (`atomic_path`: temporary file in the same
folder, fsync, rename; mode 0o666 & ~umask). A kill at any instant leaves the old checkpoint, or the new
weights (with the old sidecar, which the digest makes harmless), or both new; leftover temporaries of
killed writers are removed by the next successful write of the same file.

Loading checks, in this order, and names what is wrong in one line (`CheckpointError`, a ValueError):
the paths are regular files (a FIFO, a folder or a symlink loop is refused before opening), the JSON
(size, nesting, keys, types), the config against `config.LIMITS`, the tensor names and shapes in the
safetensors header against a model built on the meta device, then the digest or sha256, and only then
builds the model. Every OSError, ValueError, TypeError, ... on the way becomes a CheckpointError.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.overrides import TorchFunctionMode

from ._version import __version__
from .config import PRESETS, PDGANConfig
from .errors import PDGANError
from .files import (  # noqa: F401  (the writers' old home: these names keep working here)
    STALE_TMP_S,
    OutputPathError,
    atomic_path,
    atomic_write_bytes,
    sha256_file,
    sweep_stale_temporaries,
)
from .networks import LATENT_SLOTS, PDGAN, build_encoder, build_generator, build_latent

FORMAT = "pdgan-checkpoint"
FOLDER_CONFIG = "config.json"  # the sidecar of a save_pretrained folder (a run directory has model.json)
DIGEST_KEY = "pdgan.content_sha256"  # safetensors metadata key of `content_sha256`
HEADER_KEYS = frozenset({"format", "version", "config", "components", "latent_slot", "meta"})
SIDECAR_KEYS = HEADER_KEYS | {"sha256", "content_sha256"}
COMPONENTS = ("generator", "encoder", "latent")
MAX_JSON_BYTES = 100 << 20  # the sidecar (safetensors caps its own header at 100 MB too)
MAX_JSON_DEPTH = 32  # nesting of a header (the config is 3 deep; meta holds a few dicts)

log = logging.getLogger("pdgan")


class CheckpointError(PDGANError, ValueError):
    """A checkpoint could not be loaded; the message names the file and the problem."""


# --- paths -----------------------------------------------------------------------------------------
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


def _regular_file(path: Path, what: str) -> bool:
    """True for a regular file (following symlinks), False when nothing is there; CheckpointError
    for anything else. Checked before opening: opening a FIFO blocks until a writer comes."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise CheckpointError(f"{what} {path} is a dangling symlink") from None
        return False
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CheckpointError(f"{what} {path} is a symlink loop") from None
        if e.errno == errno.ENOTDIR:
            return False
        raise CheckpointError(f"cannot read {what} {path} ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{what} {path} is not a regular file (a FIFO or device?); refusing to open it")
    return True


def content_sha256(header_json: str, tensors: Mapping[str, torch.Tensor]) -> str:
    """The digest a checkpoint's weights carry: sha256 over the header string and, in name order, each
    tensor's name, dtype, shape and bytes (independent of the file layout)."""
    h = hashlib.sha256(b"pdgan-checkpoint-content-1\0")
    h.update(header_json.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"\0{name}|{str(t.dtype).removeprefix('torch.')}|{list(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes, bytes), in key order."""
    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d too
    return h.hexdigest()


# --- writing ---------------------------------------------------------------------------------------
def save_checkpoint(model: PDGAN, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write `model` (generator and, if present, encoder and latent) to PATH.safetensors + PATH.json.
    Returns the weights path. A kill at any instant leaves a loadable checkpoint (old or new)."""
    weights, config_path = _paths(path)
    return write_checkpoint(model, weights, config_path, meta)


def write_checkpoint(model: PDGAN, weights: Path, config_path: Path, meta: dict[str, Any] | None = None) -> Path:
    """The weights (metadata: "format": "pt", the header, its content digest), then the sidecar
    (the header, the file's sha256 and the digest)."""
    tensors = {f"{name}.{k}": v.detach().cpu().contiguous()
               for name in model.components for k, v in getattr(model, name).state_dict().items()}
    header = {"format": FORMAT, "version": __version__, "config": model.config.to_dict(),
              "components": model.components, "latent_slot": model.latent_slot, "meta": meta or {}}
    header_json = json.dumps(header, sort_keys=True)
    where = f"cannot save {weights}:"  # never write what cannot be loaded
    _config(_check_header(json.loads(header_json), where)["config"], where)
    digest = content_sha256(header_json, tensors)
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "pdgan": header_json, DIGEST_KEY: digest})
        file_sha = sha256_file(tmp)
    sidecar = {**header, "sha256": file_sha, "content_sha256": digest}
    atomic_write_bytes(config_path, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    return weights


# --- reading ---------------------------------------------------------------------------------------
@dataclass
class _Checkpoint:
    """What the header, the sidecar and the safetensors header say, checked, before any tensor is read."""

    weights: Path
    header: dict[str, Any]  # what read_header returns
    config: PDGANConfig
    components: list[str]
    latent_slot: str
    tensors: dict[str, tuple[str, tuple[int, ...]]]  # name -> (safetensors dtype, shape)
    embedded: str | None  # the "pdgan" metadata string of the weights
    digest: str | None  # the content digest to verify (the weights' own, else the sidecar's)
    file_sha256: str | None  # the sidecar's sha256 of the whole file (old checkpoints)
    sidecar_name: str


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's JSON header (the weights' embedded one, else NAME.json), validated: format,
    keys and types, and the config against its limits. No tensor is read."""
    weights, _ = _paths(path)
    with _as_checkpoint_error(weights):
        return _inspect(path).header


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    preset: str | None = None) -> PDGAN:
    """Load a checkpoint into a fresh `PDGAN` (eval mode). `preset`, if given, must match."""
    weights, _ = _paths(path)
    with _as_checkpoint_error(weights):
        ck = _inspect(path)
        if preset is not None and ck.config.preset != preset:
            raise CheckpointError(f"checkpoint {weights} is for preset {ck.config.preset!r}, not {preset!r}")
        _check_tensor_index(ck)
        _check_file_sha(ck)
        try:
            tensors = load_file(str(weights))
        except OSError as e:
            raise CheckpointError(f"cannot read checkpoint {weights} ({e.strerror or _short(e)})") from None
        except (SafetensorError, RuntimeError) as e:
            raise _corrupt(weights, _short(e)) from None
        if ck.digest is not None and content_sha256(ck.embedded or "", tensors) != ck.digest:
            raise _corrupt(weights, "its content digest does not match: the tensors or the header were changed")
        _check_finite(weights, tensors)
        model = PDGAN(ck.config, with_latent="latent" in ck.components, with_encoder="encoder" in ck.components)
        model.latent_slot = ck.latent_slot
        for name in model.components:
            prefix = name + "."
            getattr(model, name).load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                                  if k.startswith(prefix)})
        model.checkpoint_meta = ck.header.get("meta", {})  # for save_pretrained's model card
    return model.to(device).eval()


def _check_finite(weights: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """CheckpointError naming the first tensor (in name order) with a NaN or infinite value: such weights make
    NaN images, which the uint8 conversion turns into black ones without a word."""
    for name in sorted(tensors):
        t = tensors[name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"checkpoint {weights}: tensor {name} holds NaN or infinite values; the weights "
                                  "are damaged (a diverged training run?): use another checkpoint")


@contextlib.contextmanager
def _as_checkpoint_error(weights: Path) -> Iterator[None]:
    """Whatever a damaged or hostile file makes the reading code raise becomes one CheckpointError line."""
    try:
        yield
    except CheckpointError:
        raise
    except (OSError, ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError,
            RuntimeError, MemoryError, OverflowError, SafetensorError) as e:
        raise CheckpointError(f"checkpoint {weights} cannot be loaded ({type(e).__name__}: {_short(e)})") from None


def _inspect(path: str | os.PathLike) -> _Checkpoint:
    weights, config_path = _paths(path)
    if not _regular_file(weights, "checkpoint"):
        raise CheckpointError(f"checkpoint not found: {weights} (expected NAME.safetensors with NAME.json beside it)")
    has_sidecar, sidecar, sidecar_error = False, None, None
    try:
        if _regular_file(config_path, "checkpoint config"):
            has_sidecar, sidecar = True, _read_json(config_path)
    except CheckpointError as e:  # fatal only when the weights do not describe themselves
        sidecar_error = e
    if has_sidecar and config_path.name == FOLDER_CONFIG and (
            not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT):
        has_sidecar = False  # a folder whose config.json is someone else's (e.g. a training run's)
    meta, tensors = _safetensors_header(weights)
    embedded = meta.get("pdgan")
    digest = meta.get(DIGEST_KEY)
    where = f"checkpoint {weights}:"
    file_sha = None
    if digest is not None:  # the weights describe themselves; the sidecar is a copy
        if not isinstance(embedded, str) or not _is_sha256(digest):
            raise _corrupt(weights, f"its {DIGEST_KEY} metadata is malformed")
        header = _check_header(_parse_json(embedded, f"the header embedded in {weights}"), where)
        if sidecar_error is not None:
            log.warning(f"ignoring {config_path.name} ({sidecar_error}); using the header embedded in the weights")
        elif has_sidecar and not _describes(sidecar, header, digest):
            log.warning(f"{config_path} does not describe {weights.name} (left by an interrupted save, or edited); "
                        "using the header embedded in the weights")
        elif has_sidecar and _is_sha256(sidecar.get("sha256")):
            header = {**header, "sha256": sidecar["sha256"]}
    elif sidecar_error is not None:
        raise sidecar_error
    elif has_sidecar:  # older checkpoints: the sidecar wins
        header = _check_header(sidecar, where, SIDECAR_KEYS)
        if "sha256" in header:
            if not _is_sha256(header["sha256"]):
                raise CheckpointError(f"checkpoint config {config_path} has a malformed sha256 {header['sha256']!r}")
            file_sha = header["sha256"]
        if "content_sha256" in header:  # written with a digest: it must verify
            if not _is_sha256(header["content_sha256"]):
                raise CheckpointError(f"checkpoint config {config_path} has a malformed content_sha256")
            if not isinstance(embedded, str):
                raise _corrupt(weights, f"{config_path.name} has a content digest, but the weights lack the header "
                                        "it covers")
            digest = header["content_sha256"]
    elif isinstance(embedded, str):
        header = _check_header(_parse_json(embedded, f"the header embedded in {weights}"), where)
    else:
        raise CheckpointError(f"{weights} has no pdgan config (no {config_path.name} and no embedded header); "
                              "it was not written by pdgan")
    if digest is None and file_sha is None:  # an older checkpoint with no sha256 beside it: nothing to verify
        log.warning(f"checkpoint {weights} carries no digest and no sha256 in {config_path.name}: a damaged or "
                    "altered file cannot be detected; re-save it (pdgan_infer.save_checkpoint) to add one")
    config = _config(header["config"], where)
    components = header.get("components", ["generator", "encoder"])
    return _Checkpoint(weights, header, config, components, _latent_slot(header, weights), tensors,
                       embedded if isinstance(embedded, str) else None, digest, file_sha, config_path.name)


def _safetensors_header(weights: Path) -> tuple[dict[str, str], dict[str, tuple[str, tuple[int, ...]]]]:
    """The metadata and the tensor index (name -> dtype, shape) of a safetensors file (header only)."""
    from safetensors import safe_open
    try:  # safe_open reports an unreadable file as "No such file or directory"
        with open(weights, "rb"):
            pass
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {weights} ({e.strerror or _short(e)})") from None
    try:
        with safe_open(str(weights), "pt") as f:
            meta = f.metadata() or {}
            index = {}
            for k in f.keys():
                s = f.get_slice(k)
                index[k] = (s.get_dtype(), tuple(s.get_shape()))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise _corrupt(weights, _short(e)) from None
    return meta, index


def _read_json(path: Path) -> Any:
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise CheckpointError(f"checkpoint config {path} is {size / 1e6:.0f} MB, more than a pdgan config can be "
                              f"({MAX_JSON_BYTES >> 20} MB)")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint config {path} ({e.strerror or _short(e)})") from None
    return _parse_json(data, f"checkpoint config {path}")


def _parse_json(data: str | bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{what} is not valid JSON ({_short(e)}); re-export the checkpoint") from None
    except RecursionError:
        raise CheckpointError(f"{what} is nested too deeply to be a pdgan config") from None


def _check_header(header: Any, where: str, keys: frozenset[str] = HEADER_KEYS) -> dict[str, Any]:
    """The header's shape and types (the config itself is checked by `_config`)."""
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{where} not a pdgan checkpoint config (format != {FORMAT!r})")
    if _depth(header) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{where} its JSON is nested more than {MAX_JSON_DEPTH} levels deep")
    unknown = sorted(map(str, set(header) - keys))
    if unknown:
        raise CheckpointError(f"{where} unknown header keys {unknown[:5]}; written by another pdgan version?")
    if not isinstance(header.get("config"), dict):
        raise CheckpointError(f"{where} its config must be a mapping, got {type(header.get('config')).__name__}")
    if not isinstance(header.get("version", ""), str):
        raise CheckpointError(f"{where} its version must be a string")
    if not isinstance(header.get("meta", {}), dict):
        raise CheckpointError(f"{where} its meta must be a mapping, got {type(header['meta']).__name__}")
    components = header.get("components", ["generator", "encoder"])
    if (not isinstance(components, list) or not all(isinstance(c, str) for c in components)
            or len(set(components)) != len(components) or "generator" not in components
            or not set(components) <= set(COMPONENTS)):
        raise CheckpointError(f"{where} components must be 'generator' and any of 'encoder', 'latent', "
                              f"got {_clip(components)}")
    if "encoder" not in components and header.get("latent_slot") != "none":
        raise CheckpointError(f"{where} a model without an encoder must have latent_slot 'none' (no semantic code), "
                              f"got {_clip(header.get('latent_slot'))}")
    return header


def _config(values: dict[str, Any], where: str) -> PDGANConfig:
    preset = values.get("preset")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise CheckpointError(f"{where.rstrip(':')} names unknown preset {_clip(preset)}; known: {sorted(PRESETS)}")
    try:
        return PDGANConfig.from_dict(values)
    except ValueError as e:
        raise CheckpointError(f"{where} {e}") from None


def _describes(sidecar: Any, header: dict[str, Any], digest: str) -> bool:
    """Whether a sidecar is the copy of `header` written with these weights."""
    return (isinstance(sidecar, dict) and sidecar.get("content_sha256") == digest
            and {k: v for k, v in sidecar.items() if k not in ("sha256", "content_sha256")} == header)


def _check_tensor_index(ck: _Checkpoint) -> None:
    """Names and shapes of the file's tensors against the config's, from a model built on the meta
    device (no memory, no initialisation): a config that disagrees with the file fails here, before
    anything is allocated."""
    expected = _expected_tensors(ck.config, ck.components)
    missing = sorted(set(expected) - set(ck.tensors))
    unexpected = sorted(set(ck.tensors) - set(expected))
    if missing:
        raise CheckpointError(f"checkpoint {ck.weights} lacks {len(missing)} tensors, e.g. {missing[:3]}")
    if unexpected:
        raise CheckpointError(f"checkpoint {ck.weights} has {len(unexpected)} unexpected tensors, "
                              f"e.g. {unexpected[:3]}")
    for k, (dtype, shape) in sorted(ck.tensors.items()):
        want_dtype, want_shape = expected[k]
        if shape != want_shape:
            raise CheckpointError(f"checkpoint {ck.weights}: shape mismatch for {k}: file {shape} vs model "
                                  f"{want_shape} (config and weights disagree)")
        if (dtype in _FLOAT_DTYPES) != want_dtype.is_floating_point:
            raise CheckpointError(f"checkpoint {ck.weights}: {k} is {dtype} in the file, the model wants {want_dtype}")


_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"}


def _expected_tensors(config: PDGANConfig, components: list[str]) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    builders = {"generator": build_generator, "encoder": build_encoder, "latent": build_latent}
    out = {}
    with _ParametersOnMeta():
        for name, build in ((c, builders[c]) for c in COMPONENTS if c in components):
            out.update({f"{name}.{k}": (v.dtype, tuple(v.shape)) for k, v in build(config).state_dict().items()})
    return out


class _ParametersOnMeta(TorchFunctionMode):
    """Module construction with every `torch.empty` (how nn.Linear, nn.Conv2d and the norms make their
    parameters) on the meta device: shapes without memory or initialisation. The small buffers built
    from Python data (FIR taps, sinusoid frequencies) stay on the CPU; `with torch.device("meta")`
    would route them through decompositions that import torch._dynamo (seconds)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.empty and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _check_file_sha(ck: _Checkpoint) -> None:
    if ck.file_sha256 is not None and sha256_file(ck.weights) != ck.file_sha256:
        raise _corrupt(ck.weights, f"sha256 differs from {ck.sidecar_name}")


def _latent_slot(header: dict[str, Any], weights: Path) -> str:
    """The header's latent_slot; older checkpoints: the training run's --encoder (default "first")."""
    slot = header.get("latent_slot")
    if slot is None:
        train = header.get("meta", {}).get("train_config")
        slot = train.get("encoder", "first") if isinstance(train, dict) else "first"
    if not isinstance(slot, str) or slot not in LATENT_SLOTS:
        raise CheckpointError(f"checkpoint {weights}: latent_slot {_clip(slot)} is not one of {list(LATENT_SLOTS)}")
    return slot


def _depth(value: Any) -> int:
    """Nesting depth of JSON data, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            if d > MAX_JSON_DEPTH:
                return d
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def _is_sha256(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _corrupt(weights: Path, why: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {weights} is truncated or corrupt ({why}); re-download or re-export it")


def _clip(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _short(e: BaseException) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
