"""pdgan-generate: images by seed into a folder, the input every FID tool takes (EDM's generate.py).

    pdgan-generate digits --seeds 0-49999 --outdir samples            # samples/000000.png ... 049999.png
    pdgan-generate runs/digits --seeds 0-9,20,30-39 --outdir out       # a folder or a checkpoint file
    pdgan-generate org/repo --seeds 0-99 --outdir out --format npz     # the Hub; out/images.npz
    pdgan-generate digits --seeds 0-49999 --outdir samples --subdirs  # samples/000000/000000.png, 001000/...
    torchrun --standalone --nproc_per_node=2 -m pdgan_infer.generate digits --seeds 0-49999 --outdir samples

File `{seed:06d}.png` is image `Engine.generate(seeds=[seed])`: it comes from that seed alone
(`pdgan_infer.seeds`), so any subset of seeds, any batch size and any number of processes give the same
images. `subdirs=True` (`--subdirs`) puts it in the folder `{seed - seed % 1000:06d}/`, as EDM does.
`--format npz` writes `images.npz` instead: `images` (N, H, W, 3) uint8 in the order of --seeds, the same
array again as `arr_0` (the key the ADM / DiT evaluator reads; the file holds the images twice) and
`seeds` (N,).

The folder records what wrote it in `pdgan-generate.json` (`MANIFEST`, written atomically before the
first image): the model's weights digest (`checkpoint.weights_sha256`) and configuration, the backend,
dtype, seed rule, subfolder layout and pdgan's version. Resumable: PNGs already in the folder are not
generated again (files are written atomically, so an interrupted run leaves no half-written image),
and an images.npz with the same seeds is kept - but only when the manifest says the same model, dtype,
backend, seed rule and layout wrote them. Another one, or images without a manifest, is refused with
one line unless `overwrite=True` (`--overwrite`), which first deletes the images pdgan-generate names
(`NNNNNN.png` in the folder and its `NNNNNN/` subfolders, images.npz) and leaves other files alone.

Under torchrun the seeds are shared out as `pdgan_infer.distributed` describes, so every image is
exactly what one process computes, bit for bit.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .checkpoint import atomic_path, atomic_write_bytes, weights_sha256
from .deprecation import moved
from .device import resolve_device
from .distributed import barrier, broadcast_int, process_group, shard, sum_int
from .errors import PDGANError
from .images import save_png
from .progress import Progress

log = logging.getLogger("pdgan")
FORMATS = ("png", "npz")
NPZ_NAME = "images.npz"
MANIFEST = "pdgan-generate.json"
MANIFEST_FORMAT = "pdgan-generate/1"
SEED_RULE = "pdgan_infer.seeds: image = Engine.generate(seeds=[seed]), Philox4x32-10 keyed by the seed"
# what must match for a resume; the other manifest entries (version, the model's name) are informative
CHECKED = {"weights_sha256": "model (weights sha256)", "config": "model configuration", "backend": "backend",
           "dtype": "dtype", "seed_rule": "seed rule", "subdirs": "layout (--subdirs)"}
_PNG = re.compile(r"\d{6,}\.png")
_SUBDIR = re.compile(r"\d{6}")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".npz")


class GenerateError(PDGANError, ValueError):
    """The images cannot be generated as asked."""


def png_name(seed: int) -> str:
    return f"{seed:06d}.png"


def png_path(out: Path, seed: int, subdirs: bool = False) -> Path:
    """Where image `seed` goes: OUT/{seed:06d}.png, or OUT/{seed - seed % 1000:06d}/{seed:06d}.png (EDM)."""
    return out / f"{seed - seed % 1000:06d}" / png_name(seed) if subdirs else out / png_name(seed)


def seed_batches(seeds: list[int], batch_size: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """`seeds` cut into batches of `batch_size` in order; this process's share of them."""
    return shard([seeds[i:i + batch_size] for i in range(0, len(seeds), batch_size)], rank, world)


def batch_images(engine, batch: list[int], batch_size: int) -> np.ndarray:
    """One batch exactly as `engine.generate(seeds=all_seeds, batch_size=batch_size)` computes it (same
    shape, same padding): uint8 (len(batch), H, W, 3)."""
    return next(engine._batches(batch, batch_size, None, False))


def generate_to_folder(model: str, seeds: list[int], outdir: str | os.PathLike, fmt: str = "png", *,
                       batch_size: int | None = None, backend: str = "auto", dtype: str | None = None,
                       device: str = "auto", revision: str | None = None, progress: bool = True,
                       subdirs: bool = False, overwrite: bool = False) -> dict[str, int]:
    """Write the images of `seeds` into `outdir` (see the module docstring). Returns {"written",
    "skipped"} summed over all processes."""
    from .engine import Engine

    if fmt not in FORMATS:
        raise GenerateError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    seeds = list(dict.fromkeys(seeds))  # a seed named twice is one file
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise GenerateError(f"--outdir {out} exists and is not a folder")
    dev = resolve_device(device)
    with process_group(dev) as (rank, world):
        engine = Engine.from_pretrained(model, backend=backend, device=dev, dtype=dtype, batch_size=batch_size,
                                        revision=revision)
        if not engine.model.can_draw_z_T:
            from .networks import NO_LATENT
            raise GenerateError(NO_LATENT)
        manifest = make_manifest(engine, model, subdirs)
        if not overwrite:
            check_folder(out, manifest)  # every process, before any of them writes
        barrier(world)
        if rank == 0:
            if overwrite:
                _remove_images(out)
            atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
        done = fmt == "npz" and rank == 0 and _npz_done(out / NPZ_NAME, seeds)
        if broadcast_int(int(done), world, dev):
            log.info(f"{out / NPZ_NAME} already holds these {len(seeds)} seeds; nothing to do")
            return {"written": 0, "skipped": len(seeds)}
        bs = max(1, min(engine.batch_size, len(seeds)))
        batches = seed_batches(seeds, bs, rank, world)
        written = skipped = 0
        parts: list[tuple[list[int], np.ndarray]] = []
        with Progress(sum(len(b) for b in batches), "generate", "img", progress) as bar:
            for batch in batches:
                todo = [s for s in batch if fmt == "npz" or not png_path(out, s, subdirs).exists()]
                if not todo:  # resumed: this batch is on disk already
                    skipped += len(batch)
                    bar.update(len(batch))
                    continue
                images = batch_images(engine, batch, bs)
                if fmt == "npz":
                    parts.append((batch, images))
                else:
                    wanted = set(todo)
                    for s, img in zip(batch, images):
                        if s in wanted:
                            save_png(img, png_path(out, s, subdirs))
                written += len(todo)
                skipped += len(batch) - len(todo)
                bar.update(len(batch))
        if fmt == "npz":
            _write_npz(out, seeds, parts, rank, world, engine.image_shape)
        written, skipped = sum_int(written, world, dev), sum_int(skipped, world, dev)
        if rank == 0:
            what = out / NPZ_NAME if fmt == "npz" else out
            log.info(f"wrote {written} images to {what}" + (f" ({skipped} already there)" if skipped else "")
                     + (f" with {world} processes" if world > 1 else ""))
        return {"written": written, "skipped": skipped}


# --- the folder's manifest -----------------------------------------------------------------------
def make_manifest(engine, model: str | os.PathLike, subdirs: bool) -> dict[str, Any]:
    """What `engine` writes into a folder: the entries of MANIFEST."""
    config = json.loads(json.dumps(engine.model.config.to_dict()))  # as it reads back (lists, not tuples)
    return {"format": MANIFEST_FORMAT, "version": __version__, "model": str(model),
            "weights_sha256": weights_sha256(engine.model), "config": config,
            "backend": engine.backend, "dtype": str(engine.dtype).removeprefix("torch."), "seed_rule": SEED_RULE,
            "subdirs": bool(subdirs), "image_shape": list(engine.image_shape)}


def check_folder(out: Path, manifest: dict[str, Any]) -> None:
    """GenerateError (one line naming the difference and --overwrite) unless `out` is new, holds no
    images, or has a MANIFEST that agrees with `manifest` on every CHECKED entry."""
    if not out.is_dir():
        return
    fix = f"choose another --outdir, or pass --overwrite to replace the images in {out}"
    path = out / MANIFEST
    if not path.exists():
        found = _images(out)
        if found:
            raise GenerateError(f"{out} holds {len(found)} image file(s) (e.g. {found[0].name}) but no {MANIFEST}, "
                                f"so pdgan-generate did not write them and cannot resume there; {fix}")
        return
    try:
        old = json.loads(path.read_text())
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        raise GenerateError(f"{path} is not readable ({type(err).__name__}: {err}); {fix}") from None
    for key, what in CHECKED.items():
        was, now = old.get(key), manifest[key]
        if was != now:
            raise GenerateError(f"{out} was written with another {what} ({_difference(was, now)}); {fix}")


def _difference(was: Any, now: Any) -> str:
    if isinstance(was, dict) and isinstance(now, dict):
        keys = sorted(k for k in was.keys() | now.keys() if was.get(k) != now.get(k))
        return f"{', '.join(keys)} differ"
    return f"{_short(was)} there, {_short(now)} now"


def _short(value: Any) -> str:
    return value[:12] if isinstance(value, str) and len(value) == 64 else repr(value)  # a digest: its start


def _seed_folders(out: Path) -> list[Path]:
    return [out, *sorted(p for p in out.iterdir() if p.is_dir() and _SUBDIR.fullmatch(p.name))]


def _images(out: Path) -> list[Path]:
    """Image files (and .npz) directly in `out` and in its NNNNNN/ subfolders."""
    return [p for d in _seed_folders(out) for p in sorted(d.iterdir())
            if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES]


def _remove_images(out: Path) -> None:
    """Delete the files pdgan-generate names (NNNNNN.png here and in NNNNNN/, images.npz); others stay."""
    if not out.is_dir():
        return
    removed = 0
    for d in _seed_folders(out):
        for p in d.iterdir():
            if p.is_file() and (_PNG.fullmatch(p.name) or (d == out and p.name == NPZ_NAME)):
                p.unlink()
                removed += 1
        if d != out and not any(d.iterdir()):
            d.rmdir()
    others = len(_images(out))
    if removed or others:
            log.info(f"--overwrite: removed {removed} image file(s) from {out}"
                 + (f"; {others} other image file(s) there were left alone" if others else ""))


# --- npz -----------------------------------------------------------------------------------------
def _npz_done(path: Path, seeds: list[int]) -> bool:
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as f:
            return f["seeds"].tolist() == seeds and len(f["images"]) == len(seeds)
    except (OSError, ValueError, KeyError):
        return False


def _write_npz(out: Path, seeds: list[int], parts, rank: int, world: int, shape: tuple[int, int, int]) -> None:
    """Each process writes its images to a part file; process 0 puts them in --seeds order."""
    mine_seeds = [s for batch, _ in parts for s in batch]
    mine = np.concatenate([im for _, im in parts]) if parts else np.zeros((0, *shape), np.uint8)
    part = out / f".{NPZ_NAME}.rank{rank}.npz"
    if world > 1:
        with atomic_path(part, suffix=".npz") as tmp:
            np.savez(tmp, seeds=np.asarray(mine_seeds, np.int64), images=mine)
    barrier(world)
    if rank == 0:
        found = {}
        for r in range(world):
            if world == 1:
                s_r, im_r = mine_seeds, mine
            else:
                path = out / f".{NPZ_NAME}.rank{r}.npz"
                with np.load(path, allow_pickle=False) as f:
                    s_r, im_r = f["seeds"].tolist(), f["images"]
            found.update(zip(s_r, im_r))
        images = np.stack([found[s] for s in seeds]) if seeds else np.zeros((0, *shape), np.uint8)
        with atomic_path(out / NPZ_NAME, suffix=".npz") as tmp:
            np.savez(tmp, images=images, arr_0=images, seeds=np.asarray(seeds, np.int64))
    barrier(world)
    if world > 1:
        part.unlink(missing_ok=True)


# the command line moved to pdgan_infer.cli.generate; `main` and `build_parser` resolve here for one release
__getattr__ = moved(__name__, "pdgan_infer.cli.generate", ("main", "build_parser"))

if __name__ == "__main__":  # python -m pdgan_infer.generate (and torchrun -m): the command
    sys.exit(__getattr__("main")())
