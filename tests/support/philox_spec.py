"""An independent pure-Python Philox4x32-10 (Salmon et al., SC'11, "Parallel random numbers: as easy as
1, 2, 3") and Box-Muller, written from the published constants; test_python_philox_known_answers checks
it on Random123's known-answer vectors. Every implementation of the project's normal stream (pure torch,
C++, CUDA, Triton) is compared against this one."""
from __future__ import annotations

import math

M0, M1, W0, W1, MASK = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85, 0xFFFFFFFF


def philox4x32_10(ctr: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK, (p0 >> 32) ^ c3 ^ k1, p0 & MASK
    return c0, c1, c2, c3


def python_normals(n: int, seed: int, offset: int) -> list[float]:
    """Normals offset .. offset + n - 1 of the stream of `seed` (csrc/philox.h's definition)."""
    seed %= 2**64
    out = []
    for p in range(offset, offset + n):
        b = p // 4
        r = philox4x32_10((b & MASK, b >> 32, 0, 0), (seed & MASK, (seed >> 32) & MASK))
        pair = (p % 4) // 2
        u_radius, u_angle = ((r[2 * pair] + 0.5) / 2**32, (r[2 * pair + 1] + 0.5) / 2**32)
        radius, angle = math.sqrt(-2.0 * math.log(u_radius)), 2.0 * math.pi * u_angle
        out.append(radius * (math.cos(angle) if p % 2 == 0 else math.sin(angle)))
    return out


def random123_known_answers() -> list[tuple[tuple[int, ...], tuple[int, int], tuple[int, ...]]]:
    """(counter, key, output) of Random123's kat_vectors for philox4x32_10."""
    return [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
            ((MASK,) * 4, (MASK, MASK), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
            ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
             (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
