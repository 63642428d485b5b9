"""pdgan-generate: images by seed into a folder, the input every FID tool takes (EDM's generate.py).

    pdgan-generate digits --seeds 0-49999 --outdir samples            # samples/000000.png ... 049999.png
    pdgan-generate runs/digits --seeds 0-9,20,30-39 --outdir out       # a folder or a checkpoint file
    pdgan-generate org/repo --seeds 0-99 --outdir out --format npz     # the Hub; out/images.npz
    torchrun --standalone --nproc_per_node=2 -m pdgan_infer.generate digits --seeds 0-49999 --outdir samples

File `{seed:06d}.png` is image `Engine.generate(seeds=[seed])`: it comes from that seed alone
(`pdgan_infer.seeds`), so any subset of seeds, any batch size and any number of processes give the same
images. `--format npz` writes `images.npz` instead: `images` (N, H, W, 3) uint8 in the order of
--seeds and `seeds` (N,). Resumable: PNGs already in the folder are not generated again (files are
written atomically, so an interrupted run leaves no half-written image), and an images.npz with the
same seeds is kept.

The seeds are cut into batches of --batch-size in the given order; under torchrun rank r takes batches
r, r + K, r + 2K, ... (K processes; gloo on the CPU, NCCL on GPUs, one GPU per process), so every
batch, and therefore every image, is exactly what one process computes, bit for bit.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_path
from .deprecation import moved
from .device import resolve_device
from .errors import PDGANError
from .images import save_png

log = logging.getLogger("pdgan")
FORMATS = ("png", "npz")
NPZ_NAME = "images.npz"


class GenerateError(PDGANError, ValueError):
    """The images cannot be generated as asked."""


def png_name(seed: int) -> str:
    return f"{seed:06d}.png"


def _init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group) under torchrun; (0, 1, False) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), True


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def _sum(value: int, world: int, device: torch.device) -> int:
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device if device.type == "cuda" else "cpu")
    torch.distributed.all_reduce(t)
    return int(t.item())


def generate_to_folder(model: str, seeds: list[int], outdir: str | os.PathLike, fmt: str = "png", *,
                       batch_size: int | None = None, backend: str = "auto", dtype: str | None = None,
                       device: str = "auto", revision: str | None = None, progress: bool = True) -> dict[str, int]:
    """Write the images of `seeds` into `outdir` (see the module docstring). Returns {"written",
    "skipped"} summed over all processes."""
    from tqdm.auto import tqdm

    from .engine import Engine

    if fmt not in FORMATS:
        raise GenerateError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    seeds = list(dict.fromkeys(seeds))  # a seed named twice is one file
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise GenerateError(f"--outdir {out} exists and is not a folder")
    dev = resolve_device(device)
    rank, world, started = _init_distributed(dev)
    try:
        if fmt == "npz" and rank == 0 and _npz_done(out / NPZ_NAME, seeds):
            log.info(f"{out / NPZ_NAME} already holds these {len(seeds)} seeds; nothing to do")
            done = 1
        else:
            done = 0
        if world > 1:
            flag = torch.tensor([done], dtype=torch.int64, device=dev if dev.type == "cuda" else "cpu")
            torch.distributed.broadcast(flag, 0)
            done = int(flag.item())
        if done:
            return {"written": 0, "skipped": len(seeds)}
        engine = Engine.from_pretrained(model, backend=backend, device=dev, dtype=dtype, batch_size=batch_size,
                                        revision=revision)
        if not engine.model.can_draw_z_T:
            from .networks import NO_LATENT
            raise GenerateError(NO_LATENT)
        out.mkdir(parents=True, exist_ok=True)  # once the model loaded: a failed load leaves no empty folder
        bs = max(1, min(engine.batch_size, len(seeds)))
        batches = [seeds[i:i + bs] for i in range(0, len(seeds), bs)][rank::world]
        mine = sum(len(b) for b in batches)
        written = skipped = 0
        parts: list[tuple[list[int], np.ndarray]] = []
        bar = tqdm(total=mine, unit="img", desc="pdgan-generate", disable=not progress or rank != 0)
        with bar:
            for batch in batches:
                todo = [s for s in batch if fmt == "npz" or not (out / png_name(s)).exists()]
                if not todo:  # resumed: this batch is on disk already
                    skipped += len(batch)
                    bar.update(len(batch))
                    continue
                images = _batch(engine, batch, bs)
                if fmt == "npz":
                    parts.append((batch, images))
                else:
                    wanted = set(todo)
                    for s, img in zip(batch, images):
                        if s in wanted:
                            save_png(img, out / png_name(s))
                written += len(todo)
                skipped += len(batch) - len(todo)
                bar.update(len(batch))
        if fmt == "npz":
            _write_npz(out, seeds, parts, rank, world, engine.image_shape)
        written, skipped = _sum(written, world, dev), _sum(skipped, world, dev)
        if rank == 0:
            what = out / NPZ_NAME if fmt == "npz" else out
            log.info(f"wrote {written} images to {what}" + (f" ({skipped} already there)" if skipped else "")
                     + (f" with {world} processes" if world > 1 else ""))
        return {"written": written, "skipped": skipped}
    finally:
        if started:
            torch.distributed.destroy_process_group()


def _batch(engine, batch: list[int], bs: int) -> np.ndarray:
    """One batch exactly as `engine.generate(seeds=all_seeds)` computes it (same shape, same padding)."""
    return next(engine._batches(batch, bs, None, False))


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
    _barrier(world)
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
            np.savez(tmp, images=images, seeds=np.asarray(seeds, np.int64))
    _barrier(world)
    if world > 1:
        part.unlink(missing_ok=True)


# the command line moved to pdgan_infer.cli.generate; `main` and `build_parser` resolve here for one release
__getattr__ = moved(__name__, "pdgan_infer.cli.generate", ("main", "build_parser"))

if __name__ == "__main__":  # python -m pdgan_infer.generate (and torchrun -m): the command
    sys.exit(__getattr__("main")())
