"""VGG16 feature maps V(.) for the feature-level L1 term of the semantic loss, paper Eq. (9):

    L_Sem = E[ |G(x_T, SE(x0), T) - x0|_1 + |V(G(x_T, SE(x0), T)) - V(x0)|_1 ]

The network is the `features` stack of the standard ImageNet VGG16, built here (torchvision is not
used) with the same module indices, so the standard state dict (`features.N.weight/bias`; the
`classifier.*` keys are ignored) loads directly:

    index  0 conv1_1  1 relu1_1  2 conv1_2  3 relu1_2  4 pool1
           5 conv2_1  6 relu2_1  7 conv2_2  8 relu2_2  9 pool2
          10 conv3_1 11 relu3_1 12 conv3_2 13 relu3_2 14 conv3_3 15 relu3_3 16 pool3
          17 conv4_1 18 relu4_1 19 conv4_2 20 relu4_2 21 conv4_3 22 relu4_3 23 pool4
          24 conv5_1 25 relu5_1 26 conv5_2 27 relu5_2 28 conv5_3 29 relu5_3 30 pool5

Weights come from, in order: the `weights` argument, `$PDGAN_VGG16_WEIGHTS`, the pdgan cache
(`$PDGAN_CACHE` or ~/.cache/pdgan), torch hub's checkpoint cache, else a verified download of
torchvision's file. Only `torch.load(weights_only=True)` and safetensors are used to read them.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pdgan_train import _download

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_FILENAME = "vgg16-397923af.pth"
VGG16_SHA256_PREFIX = "397923af"  # torchvision names files by the first 8 hex digits of their SHA-256
# Full digest of that file (553,433,881 bytes) as pinned by several independent public projects'
# checksum lists; it agrees with the prefix above. Not re-computed here (no network on the dev box).
VGG16_SHA256 = "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0"
WEIGHTS_ENV = "PDGAN_VGG16_WEIGHTS"
DEFAULT_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_STAGE_WIDTHS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _layer_table() -> list[tuple[str, int, int]]:
    """(name, in_channels, out_channels) of features.0 .. features.30, in the standard order."""
    table, cin = [], 3
    for stage, widths in enumerate(_STAGE_WIDTHS, start=1):
        for conv, cout in enumerate(widths, start=1):
            table += [(f"conv{stage}_{conv}", cin, cout), (f"relu{stage}_{conv}", cout, cout)]
            cin = cout
        table.append((f"pool{stage}", cin, cin))
    return table


LAYER_TABLE = _layer_table()
LAYER_INDEX = {name: i for i, (name, _, _) in enumerate(LAYER_TABLE)}
STATE_SHAPES = {  # every key of the standard features state dict and its shape
    key: shape
    for i, (name, cin, cout) in enumerate(LAYER_TABLE) if name.startswith("conv")
    for key, shape in ((f"features.{i}.weight", (cout, cin, 3, 3)), (f"features.{i}.bias", (cout,)))
}


def _make_layer(name: str, cin: int, cout: int) -> nn.Module:
    if name.startswith("conv"):
        return nn.Conv2d(cin, cout, kernel_size=3, padding=1)
    if name.startswith("relu"):
        return nn.ReLU()  # not in-place: a tapped conv output must survive the next layer
    return nn.MaxPool2d(kernel_size=2, stride=2)


class VGG16Features(nn.Module):
    """Frozen VGG16 `features`, truncated after the last requested layer.

    forward(x): x (N, 3 or 1, H, W) in [-1, 1] -> list of the requested feature maps, in the order of
    `layers`. The input is mapped to [0, 1] and normalised with the ImageNet mean/std inside; a
    greyscale input is replicated to 3 channels. Parameters never require grad and the module stays
    in eval mode, but gradients flow to `x` (the loss back-propagates into the generator).
    """

    def __init__(self, layers: Sequence[str] = DEFAULT_LAYERS):
        super().__init__()
        layers = tuple(layers)
        unknown = [name for name in layers if name not in LAYER_INDEX]
        if not layers or unknown:
            raise ValueError(f"unknown VGG16 layers {unknown or '(none requested)'}; choose from "
                             f"{list(LAYER_INDEX)}")
        self.layers = layers
        self._taps = tuple(LAYER_INDEX[name] for name in layers)
        self._tap_set = frozenset(self._taps)
        kept = LAYER_TABLE[: max(self._taps) + 1]
        self.features = nn.Sequential(*(_make_layer(*spec) for spec in kept))
        self._min_size = 2 ** sum(name.startswith("pool") for name, _, _ in kept)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG16Features:
        return super().train(False)  # a frozen feature extractor: never switches to training mode

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"VGG16Features expects images (N, 3 or 1, H, W), got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < self._min_size:
            raise ValueError(f"VGG16Features up to {self.layers} needs images of at least "
                             f"{self._min_size}x{self._min_size}, got {tuple(x.shape[-2:])}")
        x = x.to(self.mean.dtype).expand(-1, 3, -1, -1)
        h = ((x + 1.0) * 0.5 - self.mean) / self.std
        taps: dict[int, torch.Tensor] = {}
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in self._tap_set:
                taps[index] = h
        return [taps[i] for i in self._taps]


def load_vgg16(weights: str | os.PathLike[str] | None = None, cache_dir: str | os.PathLike[str] | None = None,
               download: bool = True, layers: Sequence[str] = DEFAULT_LAYERS,
               progress: bool = True) -> VGG16Features:
    """`VGG16Features(layers)` with the ImageNet weights, on the CPU.

    Weights: `weights`, else `$PDGAN_VGG16_WEIGHTS`, else `<cache>/vgg16-397923af.pth` (or
    `.safetensors`; cache = `cache_dir`, `$PDGAN_CACHE` or ~/.cache/pdgan), else torch hub's
    checkpoint cache, else (when `download`) a SHA-256-checked download into the cache. Raises
    RuntimeError saying where to put the file when none is found.
    """
    model = VGG16Features(layers)
    path = _resolve_weights(weights, cache_dir, download, progress)
    model.load_state_dict(_select_state(_read_state(path), model, path))
    return model


def _resolve_weights(weights: str | os.PathLike[str] | None, cache: str | os.PathLike[str] | None,
                     download: bool, progress: bool) -> Path:
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"VGG16 weights file {path} not found")
        return path
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"${WEIGHTS_ENV}={env} does not name a file")
        return path
    folder = _download.cache_dir(cache)
    target = folder / VGG16_FILENAME
    hub = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME
    for candidate in (target, target.with_suffix(".safetensors"), hub):
        if candidate.is_file():
            return candidate
    if not download:
        reason = "none found and downloading is disabled"
    else:
        try:
            return _download.download_file(VGG16_URL, target, sha256=VGG16_SHA256, sha256_prefix=VGG16_SHA256_PREFIX,
                                 progress=progress)
        except (_download.DownloadError, OSError) as err:
            reason = f"none found and the download failed: {err}"
    raise RuntimeError(
        f"no VGG16 weights for the feature loss ({reason}). Download {VGG16_URL} and put it at {target} "
        f"(or set ${WEIGHTS_ENV} to a .pth/.safetensors copy of that state dict, or $PDGAN_CACHE to the "
        f"folder holding it), or train without the feature loss: --no-feature-loss")


def _read_state(path: Path) -> Any:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated zip, bad header, unsafe global...; re-raised named
        lines = str(err).strip().splitlines()
        detail = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
        raise RuntimeError(f"cannot read VGG16 weights {path} ({detail}); the file is truncated or corrupt - "
                           f"delete it and download {VGG16_URL} again, or set ${WEIGHTS_ENV} to a good copy"
                           ) from None


def _key_order(key: str) -> tuple[int, str]:
    index = key.split(".")[1]
    return (int(index), key) if index.isdigit() else (-1, key)


def _select_state(state: Any, model: VGG16Features, path: Path) -> dict[str, torch.Tensor]:
    """The entries of `state` that `model` needs, after checking that `state` is the standard
    VGG16 state dict (right keys and shapes); errors name the file and what is wrong."""
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise TypeError(f"{path} holds a {type(state).__name__}, not a VGG16 state dict")
    state = {str(k).removeprefix("module."): v for k, v in state.items()}  # DataParallel prefix
    feats = {k: v for k, v in state.items() if k.startswith("features.")}
    if not feats:
        sample = sorted(state)[:4]
        raise ValueError(f"{path} has no 'features.*' keys (first keys: {sample}); expected the standard "
                         f"VGG16 state dict from {VGG16_URL}")
    unexpected = sorted(set(feats) - set(STATE_SHAPES), key=_key_order)
    if unexpected:
        raise ValueError(f"{path} has keys {unexpected[:4]} that the standard VGG16 lacks; it looks like "
                         f"another network (VGG16-BN?) - use the plain VGG16 from {VGG16_URL}")
    for key, value in sorted(feats.items(), key=lambda kv: _key_order(kv[0])):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{path}: {key} is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != STATE_SHAPES[key]:
            raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, expected {STATE_SHAPES[key]} "
                             f"(the standard VGG16)")
    needed = sorted(model.state_dict(), key=_key_order)
    missing = [k for k in needed if k not in feats]
    if missing:
        raise ValueError(f"{path} lacks {missing[:4]}{' ...' if len(missing) > 4 else ''}, needed for the "
                         f"VGG16 layers {list(model.layers)}")
    return {k: feats[k] for k in needed}
