"""`Engine`: generate images from a checkpoint (or a preset with random weights) on one backend.

    engine = Engine.from_pretrained("digits")     # bundled name, folder, checkpoint file or "org/repo" (Hub)
    images = engine.generate(seeds=range(16))     # (16, H, W, 3) uint8: image i from seeds[i] alone
    images = engine.generate(10_000, seed=0)      # the same as seeds = [0 * 2**16 + i for i < 10_000]
    pils = engine(4, seed=0, output_type="pil")   # a list of PIL images; "pt": float32 (N, 3, H, W) in [0, 1]
    out = engine(seeds=[7, 8], return_dict=True)  # GenerateOutput(images=..., seeds=[7, 8])
    engine.save_grid(images[:100], "grid.png", nrow=10)
    engine.save_pretrained("my-model")            # config.json + model.safetensors + README.md (card)
    engine.push_to_hub("me/my-model")             # the same folder on the Hugging Face Hub
    z_T = engine.encode(images[:8])               # semantic codes SE(x0)
    variations = engine.generate_from(z_T, seed=1)

Sampling (`pdgan_infer.sampler.sample` semantics): per image, x_T, the latent denoiser's DDIM start,
z_t (t < T) and the posterior noises come from `draw_noise` with ONE SEED PER IMAGE
(`pdgan_infer.seeds`, the rule every pdgan tool follows):
    generate(seeds=[s0, s1, ...])   image i uses per-image seed seeds[i], each in [0, 2**32);
    generate(n, seed=s)             image i uses per-image seed s * 2**16 + i,   0 <= s < 2**16,
so an image depends only on its seed, not on n, the batch size or the other seeds (up to the
convolutions' summation order, which oneDNN/cuDNN may pick by batch shape: rare 1-level uint8 flips);
the same seed and backend give the same images, and calls with different `seed` share no image as long
as each makes at most 65,536 images (s * 2**16 + n <= 2**32 is checked). `pdgan-generate --seeds 0-15`
writes `generate(seeds=range(16))`. There is no `generator=` (diffusers' list of torch.Generators): one
seed = one image, whatever the batch, so `seeds=[...]` is the list to pass. `seed=None` draws a random s,
stored in `engine.last_seed` and logged. z_T comes from the latent denoiser (DDIM with `latent_steps` steps,
float32) unless the caller passes it; the other noises are the same either way, so
`generate(n, s) == generate_from(engine.sample_latents(n, s), s)`.

Messages (the backend `auto` chose, a random seed) go to `logging.getLogger("pdgan")`; `verbose=True`
also prints them to stderr.

Backends (`Engine.backends()` says which can run here and why not): see `pdgan_infer.backends`.
`backend="auto"` takes the first that builds of: CPU: native, optimized, torch; CUDA: native,
triton, optimized, torch (onnxruntime and tensorrt only when asked for by name); on the CPU the native
backend then picks its convolutions by the CPU's features (bfloat16 Winograd without AMX, oneDNN's direct
convolutions with it: `pdgan_infer.backends.fused`). `dtype=None` means float32; reduced precision is asked
for: `dtype="bfloat16"`, or `dtype="auto"`, the fastest the device runs natively (`optimize.fastest_dtype`:
bfloat16 on CPUs with AVX512-BF16 or AMX and on bfloat16 GPUs, float32 elsewhere). Timings per backend and
machine: docs/benchmarks.md. `compile` is not in the auto list: ~10 minutes of Inductor compilation per batch size on
the project's 2-core Xeon for no measurable gain over `optimized`. On a small or shared CPU,
torch.set_num_threads(1) can be faster than more threads (OpenMP regions wait for descheduled threads).

Memory: `generate` holds one batch of activations and the (n, H, W, 3) uint8 result, and refuses a
result above `MAX_GENERATE_BYTES` (4 GiB: 1.4 M images of 32x32) before allocating anything; `iter_batches`
yields uint8 batches for callers that write them out instead (memory independent of n: a `range` of seeds
is checked by its end points and never listed), as `pdgan-generate` does. Options a backend does not know
(a misspelt keyword) raise TypeError.
"""
from __future__ import annotations

import logging
import numbers
import os
import secrets
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backends import AUTO_ORDER, BACKENDS, BackendUnavailable, check_options, create, probe_all, renamed_options
from .backends import check_name as _check_backend_name
from .checkpoint import load_checkpoint
from .config import PDGANConfig
from .device import resolve_device
from .hub import pretrained_models, resolve_model
from .hub import push_to_hub as _push_to_hub
from .hub import save_pretrained as _save_pretrained
from .images import as_output_type, check_output_type
from .networks import NO_LATENT, PDGAN, random_model, redraw_zero_init
from .optimize import CUDAGraphSampler, default_batch_size, fastest_dtype, reduced_dtype_supported
from .sampler import images_from_seeds, noise_for, to_uint8
from .seeds import SEED_LIMIT, SEED_STRIDE, check_seed_block, check_seeds, image_seeds

log = logging.getLogger("pdgan")

ENGINE_KEYWORDS = ("backend", "device", "dtype", "batch_size", "latent_steps", "progress", "verbose")
# `generate` returns one array of every image; beyond this many bytes it refuses (iter_batches and
# pdgan-generate stream any number of images in constant memory).
MAX_GENERATE_BYTES = 4 << 30
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}


NO_GENERATOR = ("pdgan takes no generator=: every image comes from one integer seed of its own (the same image "
                "whatever the batch), so pass seeds=[s0, s1, ...] (one per image) or n with seed=s")
EXPORTED = ("onnxruntime", "tensorrt", "openvino")  # the backends with an export cache (export_cache_dir=)


@dataclass
class GenerateOutput:
    """What `Engine.generate(..., return_dict=True)` returns (diffusers' `ImagePipelineOutput` with the seeds):
    `images` in the call's `output_type`, and `seeds`, the per-image seed of each image."""

    images: Any
    seeds: list[int]


class Engine:
    """Image generation with one backend on one device. Build with `from_checkpoint`/`from_preset`,
    or `Engine(model)` for a `PDGAN` in memory (it is moved to `device` and put in eval mode)."""

    def __init__(self, model: PDGAN, backend: str = "auto", device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None, *, batch_size: int | None = None,
                 latent_steps: int | None = None, progress: bool | None = None, verbose: bool = False,
                 **backend_options: Any):
        if not isinstance(model, PDGAN):
            raise TypeError(f"Engine needs a pdgan_infer.PDGAN (e.g. load_checkpoint(...)), got {type(model).__name__}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.config: PDGANConfig = model.config
        self.verbose = verbose
        self.progress = progress
        r = self.config.resolution
        self.batch_size = (default_batch_size(r, self.device) if batch_size is None
                           else _check_count(batch_size, "batch_size", minimum=1))
        if latent_steps is not None and model.latent is not None:
            model.latent.ddim_timesteps(latent_steps)  # validates (ValueError with the valid range)
        self.latent_steps = latent_steps
        self.last_seed: int | None = None
        backend_options = renamed_options(backend_options)
        check_options(backend_options, engine_keywords=ENGINE_KEYWORDS)
        self.backend, self.runner = self._build_backend(backend, backend_options)
        self._latent_graph = self._latent_sampler()

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, backend: str = "auto", device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, **kwargs: Any) -> Engine:
        """Load NAME.safetensors + NAME.json (`pdgan_infer.checkpoint`) and build an engine."""
        return cls(load_checkpoint(path, device="cpu"), backend, device, dtype, **kwargs)

    @classmethod
    def from_pretrained(cls, name: str | os.PathLike | None = None, backend: str = "auto",
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        revision: str | None = None, token: str | bool | None = None,
                        cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                        force_download: bool = False, **kwargs: Any) -> Engine:
        """A model by name: bundled with the package (`Engine.from_pretrained("digits")`: the
        scikit-learn digits, 32x32, trained on CPU by the command in its JSON), a local folder
        (`save_pretrained`'s, or a pdgan-train run directory), a checkpoint file, or a Hugging Face Hub
        repository "org/repo" (needs `pip install 'pdgan[hub]'`). The Hub keywords are huggingface_hub's:
        `revision` (branch, tag or commit), `token`, `cache_dir` (the Hugging Face cache, default HF_HUB_CACHE),
        `local_files_only`, `force_download`; HF_HOME / HF_HUB_OFFLINE / HF_TOKEN apply. For a bundled name or a
        local path they change nothing. The exported backends' cache is `export_cache_dir=`. Without a name, or
        with an unknown one, raises ValueError listing what is available; `Engine.pretrained()` returns the
        bundled models as a dict."""
        path = resolve_model(name, revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only,
                             force_download=force_download)
        if (cache_dir is not None and backend in EXPORTED and "export_cache_dir" not in kwargs
                and not Path(path).resolve().is_relative_to(Path(cache_dir).expanduser().resolve())):
            warnings.warn(f"cache_dir= is the Hugging Face cache, which this local model does not use; the export "
                          f"cache of backend {backend!r} is export_cache_dir=", UserWarning, stacklevel=2)
        return cls.from_checkpoint(path, backend, device, dtype, **kwargs)

    @staticmethod
    def pretrained() -> dict[str, dict[str, Any]]:
        """{name: {"path", "preset", "description", "metrics", "command"}} of the bundled models."""
        return pretrained_models()

    @classmethod
    def from_preset(cls, name: str, seed: int = 0, backend: str = "auto", device: str | torch.device | None = None,
                    dtype: str | torch.dtype | None = None, with_latent: bool = True, **kwargs: Any) -> Engine:
        """A preset's model with random weights drawn from `seed` (benchmarks, tests). The layers
        that the training initialisation zeroes (last conv of every residual block, attention
        output, output conv: scale 1e-10, which would make G(x) ~ 0 whatever the other weights) are
        re-drawn at scale 1, so every layer shapes the images."""
        return cls(random_model(name, _check_count(seed, "seed"), with_latent), backend, device, dtype, **kwargs)

    @staticmethod
    def backends(device: str | torch.device | None = None) -> dict[str, str | None]:
        """{backend name: None if it can run on `device` (default: cuda if available, else cpu),
        else the reason and what to install or use instead}."""
        return probe_all(resolve_device(device))

    def _build_backend(self, backend: str, options: dict[str, Any]):
        options = {"batch_size": self.batch_size, **options}  # tensorrt builds its profile for it
        if backend != "auto":
            _check_backend_name(backend)
            return backend, create(backend, self.model, self.device, self.dtype, **options)
        skipped = []
        for name in AUTO_ORDER[self.device.type]:
            try:
                runner = create(name, self.model, self.device, self.dtype, **options)
            except (BackendUnavailable, ImportError, RuntimeError, ValueError, OSError) as e:
                skipped.append(f"{name}: {e}")
                continue
            self._report(f"pdgan Engine: backend='auto' chose {name!r} on {self.device} ({_dtype_name(self.dtype)})"
                         + (f"; skipped {'; '.join(skipped)}" if skipped else ""))
            return name, runner
        raise BackendUnavailable(f"no backend can run on {self.device}: {'; '.join(skipped)}")

    def _report(self, message: str) -> None:
        log.info(message)
        if self.verbose and not _stderr_handled(log):
            print(message, file=sys.stderr)

    def __repr__(self) -> str:
        return (f"Engine(preset={self.config.preset!r}, backend={self.backend!r}, device={self.device}, "
                f"dtype={_dtype_name(self.dtype)}, batch_size={self.batch_size})")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        r = self.config.resolution
        return (r, r, 3)

    # --- generation ----------------------------------------------------------------------------
    def generate(self, n: int | None = None, seed: int | None = None, batch_size: int | None = None,
                 z_T: torch.Tensor | np.ndarray | None = None, progress: bool | None = None, *,
                 seeds: Iterable[int] | None = None, output_type: str = "np", return_dict: bool = False,
                 generator: Any = None) -> Any:
        """Images as a (N, H, W, 3) uint8 array: `seeds=[...]` (image i from seeds[i] alone), or `n`
        images of `seed` (per-image seeds seed * 2**16 + i). z_T: (N, nz) or (nz,) semantic codes
        (default: drawn by the latent denoiser). Same seeds and backend => same images.
        `output_type`: "np" (the uint8 array), "pil" (a list of PIL images), "pt" (float32 torch (N, 3, H, W)
        in [0, 1], the uint8 values / 255: `pdgan_infer.images.as_output_type`); `return_dict=True` returns a
        `GenerateOutput(images, seeds)`. `generator=` (diffusers') raises TypeError: pass `seeds=`."""
        if generator is not None:
            raise TypeError(NO_GENERATOR)
        check_output_type(output_type)  # before any work
        seeds = self._image_seeds(n, seed, seeds)
        batches = self._iter(seeds, batch_size, z_T, progress)  # checks the arguments first
        size = len(seeds) * int(np.prod(self.image_shape))
        if size > MAX_GENERATE_BYTES:
            raise ValueError(f"generate({len(seeds)}) would hold {size / 2**30:.1f} GiB of images in memory (the limit "
                             f"is {MAX_GENERATE_BYTES / 2**30:.0f} GiB); stream them with engine.iter_batches(n, seed) "
                             "or write files with pdgan-generate MODEL --seeds A-B --outdir DIR")
        out = np.empty((len(seeds), *self.image_shape), np.uint8)
        start = 0
        for images in batches:
            out[start:start + len(images)] = images
            start += len(images)
        images = as_output_type(out, output_type)
        return GenerateOutput(images, list(seeds)) if return_dict else images

    __call__ = generate

    def generate_from(self, z_T: torch.Tensor | np.ndarray, seed: int | None = None, batch_size: int | None = None,
                      progress: bool | None = None, *, seeds: Iterable[int] | None = None, output_type: str = "np",
                      return_dict: bool = False, generator: Any = None) -> Any:
        """One image per row of z_T (N, nz), e.g. codes from `encode`: same semantics, new details
        (`output_type`, `return_dict`: as in `generate`)."""
        if generator is not None:
            raise TypeError(NO_GENERATOR)
        z_T = self._check_latents(z_T, None)
        return self.generate(len(z_T) if seeds is None else None, seed, batch_size, z_T, progress, seeds=seeds,
                             output_type=output_type, return_dict=return_dict)

    def iter_batches(self, n: int | None = None, seed: int | None = None, batch_size: int | None = None,
                     z_T: torch.Tensor | np.ndarray | None = None, progress: bool | None = None, *,
                     seeds: Iterable[int] | None = None) -> Iterator[np.ndarray]:
        """`generate` as a stream of (b, H, W, 3) uint8 batches (memory independent of n)."""
        return self._iter(self._image_seeds(n, seed, seeds), batch_size, z_T, progress)

    def _iter(self, seeds: Sequence[int], batch_size: int | None, z_T, progress: bool | None) -> Iterator[np.ndarray]:
        n = len(seeds)
        bs = self.batch_size if batch_size is None else _check_count(batch_size, "batch_size", minimum=1)
        z_T = None if z_T is None else self._check_latents(z_T, n)
        if z_T is None and not self.model.can_draw_z_T:
            raise ValueError(NO_LATENT)
        show = self.progress if progress is None else progress
        return self._batches(seeds, max(1, min(bs, n)), z_T, show)

    def _batches(self, seeds: Sequence[int], bs: int, z_T: torch.Tensor | None,
                 show: bool | None) -> Iterator[np.ndarray]:
        """The batches' images; `show` as `pdgan_infer.progress.Progress` takes it (None: a bar on a terminal
        or in a notebook, nothing in a plain script; True: log lines there too; False: nothing)."""
        from .progress import Progress
        n = len(seeds)
        with Progress(n, f"pdgan {self.backend}", "img", show, leave=False) as bar:
            for start in range(0, n, bs):
                part = list(seeds[start:start + bs])
                zb = None if z_T is None else z_T[start:start + len(part)]
                x0 = self._sample_batch(part, zb, pad_to=bs)
                yield to_uint8(x0).cpu().numpy()
                bar.update(len(part))

    @torch.no_grad()
    def _sample_batch(self, seeds: list[int], z_T: torch.Tensor | None, pad_to: int) -> torch.Tensor:
        count = len(seeds)

        def run(*inputs: torch.Tensor) -> torch.Tensor:  # x_T, z_T, z, eps
            if self.runner.static_shapes and count < pad_to:  # no recompilation / recapture for the last batch
                # the Runner layout (SamplerNoise): z and eps step first; exported graphs get them batch first from
                # their runner (backends.exported.ExportedRunner)
                inputs = tuple(_pad(t, pad_to, dim=1 if i >= 2 else 0) for i, t in enumerate(inputs))
            return self.runner(*inputs)[:count]
        return images_from_seeds(self.model, seeds, z_T, draw_z_T=lambda start: self._latents(start, pad_to),
                                 chain=run, device=self.device)

    @torch.no_grad()
    def _latents(self, start: torch.Tensor, pad_to: int = 0) -> torch.Tensor:
        """z_T from the (N, nz) starts; with graph runners a short last batch is padded to `pad_to` rows, so
        generate and sample_latents replay the same graph (same shapes: same sums) for every batch."""
        count = start.shape[0]
        if getattr(self.runner, "cuda_graph", False) and count < pad_to:
            start = _pad(start, pad_to, dim=0)
        draw = self._latent_graph if self._latent_graph is not None else self._draw_z_T
        return draw(start.float())[:count]

    def _draw_z_T(self, start: torch.Tensor) -> torch.Tensor:
        return self.model.draw_z_T(start, self.latent_steps)

    def _latent_sampler(self) -> CUDAGraphSampler | None:
        """The latent DDIM's CUDA graphs when the runner replays graphs (10 DDIM steps of a small MLP are ~700
        kernel launches per batch, more than the graphed 2-NFE chain costs on a GPU); None: eager. The
        sampler holds `_draw_z_T` weakly (no reference cycle through the engine)."""
        graphs = getattr(self.runner, "cuda_graph", False)
        if graphs and self.model.latent is not None and self.model.latent_slot != "none":
            return CUDAGraphSampler(self._draw_z_T)
        return None

    def save_pretrained(self, folder: str | os.PathLike, **kwargs: Any):
        """Write the model as a folder: config.json, model.safetensors and a README.md model card, which
        `Engine.from_pretrained(folder)` loads (keywords: `pdgan_infer.hub.save_pretrained`'s). Returns the folder."""
        return _save_pretrained(self.model, folder, **kwargs)

    def push_to_hub(self, repo_id: str, *, token: str | None = None, private: bool | None = None,
                    revision: str | None = None, commit_message: str = "Upload pdgan model", create_pr: bool = False,
                    **kwargs: Any):
        """Upload the model to Hugging Face Hub repository `repo_id` (created if missing) as the folder
        `save_pretrained` writes; `Engine.from_pretrained(repo_id)` loads it. Keywords: `pdgan_infer.hub.push_to_hub`'s
        (needs `pip install 'pdgan[hub]'`). Returns huggingface_hub's CommitInfo (`.commit_url`)."""
        return _push_to_hub(self.model, repo_id, token=token, private=private, revision=revision,
                            commit_message=commit_message, create_pr=create_pr, **kwargs)

    def sample_latents(self, n: int | None = None, seed: int | None = None, batch_size: int | None = None, *,
                       seeds: Iterable[int] | None = None) -> torch.Tensor:
        """The z_T (N, nz) float32 CPU codes that `generate` with the same n / seed / seeds would draw."""
        seeds = self._image_seeds(n, seed, seeds)
        if not self.model.can_draw_z_T:
            raise ValueError(NO_LATENT)
        bs = self.batch_size if batch_size is None else _check_count(batch_size, "batch_size", minimum=1)
        c, parts = self.config, []
        for start in range(0, len(seeds), bs):
            noise = noise_for(self.model, seeds[start:start + bs], device=self.device)  # as generate draws it
            with torch.no_grad():
                parts.append(self._latents(noise.z_T_noise, bs).cpu())
        return torch.cat(parts) if parts else torch.zeros(0, c.generator.nz)

    def _image_seeds(self, n: int | None, seed: int | None, seeds: Iterable[int] | None) -> Sequence[int]:
        """The per-image seeds of a call: `seeds` as given, or image_seeds(seed, 0, n)."""
        if seeds is not None:
            if seed is not None:
                raise ValueError("give seed (with n) or seeds, not both")
            seeds = check_seeds(seeds)
            if n is not None and _check_count(n, "n") != len(seeds):
                raise ValueError(f"n={n} but {len(seeds)} seeds were given; leave n out with seeds=")
            return seeds
        if n is None:
            raise TypeError("n must be an integer (or pass seeds=[...]), got None")
        n = _check_count(n, "n")
        if n > SEED_LIMIT:
            raise ValueError(f"n={n} is more than the 2**32 per-image seeds; generate at most 2**32 images "
                             "(in parts: seeds=range(a, b), or pdgan-generate --seeds A-B)")
        first = self._resolve_seed(seed, n) * SEED_STRIDE
        return range(first, first + n)  # image_seeds(seed, 0, n), without a list of n ints

    def _resolve_seed(self, seed: int | None, n: int) -> int:
        if seed is None:
            seed = secrets.randbelow((SEED_LIMIT - n) // SEED_STRIDE + 1)
            self._report(f"pdgan Engine: seed=None, using seed={seed} (pass seed={seed} to reproduce)")
        seed = check_seed_block(seed, n)
        self.last_seed = seed
        return seed

    def _check_latents(self, z_T, n: int | None) -> torch.Tensor:
        nz = self.config.generator.nz
        if isinstance(z_T, np.ndarray):
            z_T = torch.from_numpy(z_T)
        if not isinstance(z_T, torch.Tensor):
            raise TypeError(f"z_T must be a torch tensor or numpy array of shape (N, {nz}), got {type(z_T).__name__}")
        _has_values(z_T, "z_T")
        if not z_T.dtype.is_floating_point:
            raise TypeError(f"z_T must be a floating-point tensor, got {z_T.dtype}")
        if n is not None and z_T.shape in ((nz,), (1, nz)):
            z_T = z_T.reshape(1, nz).expand(n, nz)  # one semantic code for all n images
        want = f"({n}, {nz})" if n is not None else f"(N, {nz})"
        if z_T.ndim != 2 or z_T.shape[1] != nz or (n is not None and z_T.shape[0] != n):
            raise ValueError(f"z_T must have shape {want}" + (f" or ({nz},)" if n is not None else "")
                             + f" for preset {self.config.preset!r}, got {tuple(z_T.shape)}")
        if not bool(torch.isfinite(z_T).all()):
            raise ValueError("z_T contains NaN or infinite values")
        return z_T.detach().float().cpu()

    # --- encoding ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: np.ndarray | torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Semantic codes z_T = SE(x0) (N, nz), float32 on the CPU. `images`: uint8 (N, H, W, C) (numpy
        or tensor, as `generate` returns) or float (N, C, H, W) in [-1, 1]. The encoder runs in float32."""
        if self.model.encoder is None:
            raise ValueError(f"this {self.config.preset!r} model has no semantic encoder (latent slot "
                             f"{self.model.latent_slot!r}, components {self.model.components}): it cannot encode "
                             "images; generate(n) and generate(seeds=...) work")
        x = self._images_to_model(images)
        bs = self.batch_size if batch_size is None else _check_count(batch_size, "batch_size", minimum=1)
        parts = [self.model.encoder(x[i:i + bs].to(self.device)).float().cpu() for i in range(0, len(x), bs)]
        return torch.cat(parts) if parts else torch.zeros(0, self.config.generator.nz)

    def _images_to_model(self, images) -> torch.Tensor:
        c, r = self.config.channels, self.config.resolution
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a numpy array or torch tensor, got {type(images).__name__}")
        _has_values(images, "images")
        if images.dtype == torch.uint8:
            if images.ndim != 4 or images.shape[1:3] != (r, r) or images.shape[3] not in (1, 3):
                raise ValueError(f"uint8 images must be (N, {r}, {r}, 3) (NHWC, as generate() returns), "
                                 f"got {tuple(images.shape)}")
            x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        elif images.dtype.is_floating_point:
            if images.ndim != 4 or images.shape[2:] != (r, r) or images.shape[1] not in (1, 3):
                raise ValueError(f"float images must be (N, {c}, {r}, {r}) (NCHW) in [-1, 1], got "
                                 f"{tuple(images.shape)}")
            x = images.float()
            if x.numel() and (not bool(torch.isfinite(x).all()) or x.abs().max() > 1.0 + 1e-3):
                raise ValueError("float images must be finite and in [-1, 1] (uint8 images go in as NHWC uint8)")
            if x.numel() > 1 and float(x.min()) >= 0.0 and float(x.max()) > 0.0:
                warnings.warn("encode: these float images have no negative value, as if they were in [0, 1]; "
                              "encode wants [-1, 1] (pass images * 2 - 1, or uint8 NHWC images)", stacklevel=3)
        else:
            raise TypeError(f"images must be uint8 (NHWC) or float (NCHW in [-1, 1]), got {images.dtype}")
        if x.shape[1] != c:  # grey <-> RGB (the digits preset is RGB)
            x = x.expand(-1, c, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
        return x.contiguous()

    # --- output --------------------------------------------------------------------------------
    @staticmethod
    def save_grid(images: np.ndarray, path: str | os.PathLike, nrow: int = 10, pad: int = 2):
        """Save (N, H, W, 3) uint8 images as one PNG grid (`pdgan_infer.images.save_grid`)."""
        from .images import save_grid
        return save_grid(images, path, nrow=nrow, pad=pad)


# --- argument checks ---------------------------------------------------------------------------------
def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """None -> float32; "auto" -> `optimize.fastest_dtype(device)`; torch dtypes or names (float32/fp32,
    bfloat16/bf16, float16/fp16/half)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str) and dtype.lower() == "auto":
        return fastest_dtype(device)
    if isinstance(dtype, str):
        if dtype.lower() not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose float32, bfloat16, float16 or auto")
        dtype = DTYPES[dtype.lower()]
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype or a name like 'bfloat16', got {type(dtype).__name__}")
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype {dtype} is not supported; choose torch.float32, torch.bfloat16 or torch.float16")
    reason = reduced_dtype_supported(dtype, device)
    if reason is not None:
        raise ValueError(f"dtype {_dtype_name(dtype)} on {device}: {reason}")
    return dtype


def _check_count(n: object, what: str, minimum: int = 0) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{what} must be an integer, got {type(n).__name__} {n!r}")
    if n < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {n}")
    return int(n)


def _stderr_handled(logger: logging.Logger) -> bool:
    """Whether the message already reaches stderr through a handler (a CLI's), so verbose=True does
    not print it twice."""
    return logger.isEnabledFor(logging.INFO) and any(
        isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stderr for h in logger.handlers)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _pad(t: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    shape = list(t.shape)
    shape[dim] = size - shape[dim]
    return torch.cat([t, t.new_zeros(shape)], dim=dim)


__all__ = ["Engine", "GenerateOutput", "BACKENDS", "BackendUnavailable", "image_seeds", "redraw_zero_init",
           "resolve_device", "resolve_dtype"]


def _has_values(t: torch.Tensor, what: str) -> None:
    """A tensor on the meta device has a shape but no values (every check of them would raise)."""
    if t.is_meta:
        raise ValueError(f"{what} is on the meta device and holds no values; pass a CPU or CUDA tensor")
