"""The one seed rule of pdgan: every image is drawn from one integer seed of its own.

    Engine.generate(seeds=[s0, s1, ...])   image i comes from seeds[i] alone (`draw_noise([seeds[i]])`)
    Engine.generate(n, seed=s)             is seeds = image_seeds(s, 0, n) = [s * 2**16 + i for i < n]
    pdgan-generate --seeds 0-49999         file {seed:06d}.png comes from that seed alone (EDM's rule)

`pdgan-eval --seed s`, `pdgan-edit --seed s` and the ONNX export check use `image_seeds(s, ...)` too, so
`pdgan-eval --seed 0 --n N`, `Engine.generate(N, seed=0)` and `pdgan-generate --seeds 0-(N-1)` make the
same images. An image depends on its seed only, never on the batch it was computed in or on the other
seeds (up to the convolutions' summation order, which oneDNN/cuDNN may pick by batch shape: rare
1-level uint8 flips). Seeds are in [0, 2**32): torch's CPU generator keeps only the low 32 bits. The
stride 2**16 keeps the images of `generate(n, seed=s)` apart from those of other s while n <= 65,536.
"""
from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Sequence

SEED_STRIDE = 1 << 16  # image i of seed s draws from per-image seed s * SEED_STRIDE + i
SEED_LIMIT = 1 << 32  # per-image seeds are in [0, SEED_LIMIT)
MAX_BLOCK_SEED = SEED_LIMIT // SEED_STRIDE  # `seed=s` is in [0, MAX_BLOCK_SEED)
MAX_SEEDS = 10_000_000  # parse_seeds: seeds in one spec (a Python list of them is ~0.4 GB)


def image_seeds(seed: int, start: int, count: int) -> list[int]:
    """The per-image seeds of images start .. start+count-1 of `generate(n, seed=seed)`."""
    return [seed * SEED_STRIDE + i for i in range(start, start + count)]


def check_block_seed(seed: object, what: str = "seed") -> int:
    """`seed` of `generate(n, seed=seed)` (an int in [0, MAX_BLOCK_SEED)); TypeError/ValueError naming it."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{what} must be an integer, got {type(seed).__name__} {seed!r}")
    if not 0 <= seed < MAX_BLOCK_SEED:
        raise ValueError(f"{what} must be in [0, {MAX_BLOCK_SEED}), got {seed}")
    return int(seed)


def check_seed_block(seed: object, n: int, what: str = "seed") -> int:
    """`seed` of `generate(n, seed=seed)`: `check_block_seed`, and its n per-image seeds within [0, 2**32)."""
    seed = check_block_seed(seed, what)
    if seed * SEED_STRIDE + n > SEED_LIMIT:
        raise ValueError(f"{what}={seed} with n={n} runs past the 2**32 per-image seeds "
                         f"({what} * {SEED_STRIDE} + n must be <= 2**32); use a smaller {what} or seeds=[...]")
    return seed


def check_seeds(seeds: Iterable[int], what: str = "seeds") -> Sequence[int]:
    """The per-image seeds (ints in [0, 2**32)); TypeError/ValueError naming the first bad one. A `range` is
    checked by its bounds and returned as it is (never listed: `range(2**32)` costs nothing); anything else
    becomes a list of ints, at most MAX_SEEDS of them (a longer stream is refused before it fills memory)."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise TypeError(f"{what} must be a sequence of integers (e.g. range(16)), got {type(seeds).__name__}")
    if isinstance(seeds, range):
        for i, s in ((0, seeds[0]), (-1, seeds[-1])) if seeds else ():  # the end points bound every element
            if not 0 <= s < SEED_LIMIT:
                raise ValueError(f"{what}[{i}] = {s} is outside [0, 2**32)")
        return seeds
    out = []
    for i, s in enumerate(seeds):
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(f"{what}[{i}] must be an integer, got {type(s).__name__} {s!r}")
        if not 0 <= s < SEED_LIMIT:
            raise ValueError(f"{what}[{i}] = {s} is outside [0, 2**32)")
        if i >= MAX_SEEDS:
            raise ValueError(f"more than {MAX_SEEDS:,} {what}: pass a range (checked without listing it) or "
                             "split the run")
        out.append(int(s))
    return out


_SEED_PART = re.compile(r"([0-9]+)(?:-([0-9]+))?")  # ASCII digits only: no '+5', '1_0' or other scripts' digits


def parse_seeds(spec: str) -> list[int]:
    """'0-9,20,30-39' -> [0, ..., 9, 20, 30, ..., 39] (ranges inclusive, order kept, as EDM's --seeds).
    ValueError with the offending part when the text is not such a list."""
    seeds: list[int] = []
    for raw in str(spec).split(","):
        part = raw.strip()
        if not part:
            continue
        match = _SEED_PART.fullmatch(part)
        if match is None:
            raise ValueError(f"bad seed {part!r} in {spec!r}: expected N or A-B (ASCII digits), e.g. 0-49999 or 0-9,20")
        a = int(match[1])
        b = a if match[2] is None else int(match[2])
        if b < a:
            raise ValueError(f"bad seed range {part!r}: the end is below the start")
        if b >= SEED_LIMIT:  # checked before the list is built: '0-4294967295' would not fit in memory
            raise ValueError(f"bad seed {part!r}: {b} is outside [0, 2**32)")
        if len(seeds) + b - a + 1 > MAX_SEEDS:
            raise ValueError(f"more than {MAX_SEEDS:,} seeds in {spec!r}; split the run")
        seeds.extend(range(a, b + 1))
    if not seeds:
        raise ValueError(f"no seeds in {spec!r}: expected e.g. 0-49999 or 0-9,20,30-39")
    return list(check_seeds(seeds))
