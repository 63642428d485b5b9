"""The standard TorchScript feature networks of the field's metric tools, loaded with `torch.jit.load`
(no torchvision, nothing unpickled): the files StyleGAN2-ADA-pytorch, EDM and DDGAN-era papers use.

    inception-2015-12-05.pt   Inception-v3 (TF "2015-12-05" graph, direct TorchScript translation)
        forward(img, return_features=False, use_fp16=False, no_output_bias=False)
        img: (N, 3, H, W), uint8 or float in [0, 255], any H, W (resized to 299x299 inside with
        bilinear grid_sample, then mapped to [-1, 1] by (x - 128) / 128).
        return_features=True -> (N, 2048) pool_3 features (FID, KID);
        no_output_bias=True -> (N, 1008) softmax *probabilities* of the logit layer applied without
        its bias, which matches the original IS code (StyleGAN2-ADA's metrics/inception_score.py).
    vgg16.pt                  VGG16 (+ LPIPS weights), the network of StyleGAN2-ADA's precision/recall
        forward(img, resize_images=True, return_lpips=False, return_features=False)
        img: (N, 3, H, W) in [0, 255] (resized to 224x224 inside unless resize_images=False);
        return_features=True -> (N, 4096) fc2 features (StyleGAN2-ADA's metrics/precision_recall.py).

Those signatures were read from StyleGAN2-ADA-pytorch's metrics code (detector_kwargs) and from
published decompilations of the TorchScript files, not guessed. Grey images are repeated to RGB first.

A file is found, in order: the explicit `path`, the environment variable (`PDGAN_INCEPTION`,
`PDGAN_VGG16_TS`), `<cache>/<filename>` (cache = `pdgan_train._download.cache_dir`: `$PDGAN_CACHE`
or ~/.cache/pdgan), else - only when `download=True` - a SHA-256-checked download into the cache.
Loading checks the SHA-256 (unless `verify=False`), that `torch.jit.load` accepts the file, and that
one forward pass gives features of the expected width; each failure is one clear line.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdgan_infer.errors import PDGANError
from pdgan_train import _download


class FeatureNetError(PDGANError, RuntimeError):
    """A feature network is unavailable, truncated, not the expected file, or does not run."""


@dataclass(frozen=True)
class NetSpec:
    name: str  # short name used in results and cache keys
    filename: str  # name in the cache directory
    url: str  # where the file is published
    sha256: str | None  # full digest of that file, None when it could not be established
    env: str  # environment variable naming a local copy
    feature_dim: int  # width of the features it returns with return_features=True
    used_for: str  # what needs it (for messages)


# Both digests are the ones pinned by several independent public projects' checksum lists
# (k-diffusion and clean-fid-based evaluators for the Inception file, genforce for vgg16.pt); they
# could not be recomputed here (no network on the dev machine). The Inception file is 95,607,719 bytes.
INCEPTION = NetSpec(
    name="inception-2015-12-05", filename="inception-2015-12-05.pt",
    url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
    sha256="f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4",
    env="PDGAN_INCEPTION", feature_dim=2048, used_for="FID and IS")
VGG16 = NetSpec(
    name="vgg16-stylegan2-ada", filename="vgg16.pt",
    url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt",
    sha256="b437eb095feaeb0b83eb3fa11200ebca4548ee39a07fb944a417ddc516cc07c3",
    env="PDGAN_VGG16_TS", feature_dim=4096, used_for="precision/recall")
# The same Inception network is also published as a pickle for StyleGAN3
# (https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/inception-2015-12-05.pkl);
# pdgan never unpickles files, so only the TorchScript .pt is supported.


def locate(spec: NetSpec, path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
           download: bool = False, progress: bool = True) -> Path:
    """The file of `spec`: `path`, else $spec.env, else the cache, else (download=True) a verified
    download into the cache. Raises FeatureNetError naming every place it looked."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FeatureNetError(f"{spec.filename}: {p} is not a file")
        return p
    env = os.environ.get(spec.env)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise FeatureNetError(f"${spec.env}={env} does not name a file (expected {spec.filename})")
        return p
    target = _download.cache_dir(cache_dir) / spec.filename
    if target.is_file():
        return target
    if download:
        try:
            return _download.download_file(spec.url, target, sha256=spec.sha256, progress=progress)
        except (_download.DownloadError, OSError) as err:
            reason = f"the download failed: {err}"
    else:
        reason = "downloading was not enabled (download=True / --download-nets)"
    raise FeatureNetError(
        f"{spec.filename} (needed for {spec.used_for}) not found and {reason}. Download {spec.url} to "
        f"{target}, or set ${spec.env} to a copy (or $PDGAN_CACHE to the folder holding it)")


def load_torchscript(path: str | os.PathLike, sha256: str | None = None, what: str | None = None,
                     device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """`torch.jit.load(path)` in eval mode, after checking the file's SHA-256 when `sha256` is given.
    A wrong digest or an unloadable (truncated, non-TorchScript) file raises FeatureNetError."""
    path = Path(path)
    what = what or path.name
    if sha256 is not None:
        got = _download.sha256_file(path)
        if got != sha256.lower():
            raise FeatureNetError(f"{what}: {path} has sha256 {got}, expected {sha256.lower()}; the file is "
                                  f"truncated or not the published network - delete it and download it again")
    try:
        with warnings.catch_warnings():  # recent torch deprecates TorchScript; these files exist only as such
            warnings.filterwarnings("ignore", message=".*torch.jit", category=DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device)
    except Exception as err:  # noqa: BLE001 - torch raises RuntimeError/ValueError/zip errors; re-raised named
        lines = str(err).strip().splitlines()
        detail = f"{type(err).__name__}: {lines[0][:160]}" if lines else type(err).__name__
        raise FeatureNetError(f"{what}: cannot load TorchScript file {path} ({detail}); the file is truncated "
                              f"or not a TorchScript network") from None
    return module.eval()


def as_uint8_nchw(images: Any) -> torch.Tensor:
    """uint8 images -> (N, 3, H, W) uint8. Channels-last (N, H, W, 3|1), pdgan's image format, is
    assumed whenever the last axis has 1 or 3 entries; otherwise (N, 3|1, H, W) is expected."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"expected uint8 images (N, H, W, C) or (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    elif x.shape[1] not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got images of shape {tuple(x.shape)}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def batches(images: Any, batch_size: int) -> Iterator[torch.Tensor]:
    for i in range(0, len(images), batch_size):
        yield as_uint8_nchw(images[i:i + batch_size])


class TorchScriptFeatureNet:
    """A loaded TorchScript metric network: `spec`, `path`, `sha256` and the feature call."""

    def __init__(self, spec: NetSpec, module: torch.jit.ScriptModule, path: Path, sha256: str | None):
        self.spec, self.module, self.path, self.sha256 = spec, module, path, sha256
        self.device = next((b.device for b in module.parameters()), torch.device("cpu"))

    @torch.no_grad()
    def features(self, images: Any, batch_size: int = 64) -> np.ndarray:
        """(N, feature_dim) float32 features of uint8 images (NHWC or NCHW, grey or RGB)."""
        out = [self.module(x.to(self.device), return_features=True).float().cpu() for x in batches(images, batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.spec.feature_dim), np.float32)

    def check(self) -> None:
        """One forward pass on a blank 32x32 image: the features must be (1, feature_dim)."""
        try:
            f = self.features(np.zeros((1, 32, 32, 3), np.uint8))
        except Exception as err:  # noqa: BLE001 - any failure of a foreign network; re-raised named
            raise FeatureNetError(f"{self.spec.filename}: {self.path} loads but does not run as the "
                                  f"{self.spec.name} network ({type(err).__name__}: "
                                  f"{str(err).strip()[:160]})") from None
        if f.shape != (1, self.spec.feature_dim):
            raise FeatureNetError(f"{self.spec.filename}: {self.path} returns features of shape {f.shape}, "
                                  f"expected (1, {self.spec.feature_dim}); it is not the {self.spec.name} network")


class InceptionNet(TorchScriptFeatureNet):
    @torch.no_grad()
    def probs(self, images: Any, batch_size: int = 64) -> np.ndarray:
        """(N, 1008) class probabilities for the Inception score (logit layer without bias, softmax)."""
        out = [self.module(x.to(self.device), no_output_bias=True).float().cpu() for x in batches(images, batch_size)]
        return torch.cat(out).numpy()


def _load(spec: NetSpec, cls: type, path, cache_dir, download, verify, device, progress) -> Any:
    file = locate(spec, path, cache_dir, download, progress)
    digest = _download.sha256_file(file)
    if verify and spec.sha256 is not None and digest != spec.sha256:
        raise FeatureNetError(f"{spec.filename}: {file} has sha256 {digest}, expected {spec.sha256}; the file is "
                              f"truncated or not the published network - delete it and download {spec.url} "
                              f"again (or pass verify=False / --no-verify-nets for a deliberately different copy)")
    net = cls(spec, load_torchscript(file, None, spec.filename, device), file, digest)
    net.check()
    return net


def load_inception(path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                   download: bool = False, verify: bool = True, device: str | torch.device = "cpu",
                   progress: bool = True) -> InceptionNet:
    """The Inception-v3 TorchScript network for FID/IS (see the module docstring for the search order)."""
    return _load(INCEPTION, InceptionNet, path, cache_dir, download, verify, device, progress)


def load_vgg16_ts(path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                  download: bool = False, verify: bool = True, device: str | torch.device = "cpu",
                  progress: bool = True) -> TorchScriptFeatureNet:
    """StyleGAN2-ADA's VGG16 TorchScript network for precision/recall."""
    return _load(VGG16, TorchScriptFeatureNet, path, cache_dir, download, verify, device, progress)
