"""pdgan_infer.seeds: the seed-list syntax (ASCII only) and the seed checks (ranges by their end points)."""
from __future__ import annotations

import pytest

from pdgan_infer.seeds import MAX_SEEDS, SEED_LIMIT, check_seeds, parse_seeds


def test_parse_seeds_takes_ascii_digits_only():
    assert parse_seeds("0-2, 7,4294967295") == [0, 1, 2, 7, SEED_LIMIT - 1]
    for bad in ("+5", "1_0", "3-+4", "\u0661\u0662", "\uff15", "4 - 5", "0x10", "5.0", "-3", "3--4"):
        with pytest.raises(ValueError, match=r"bad seed .*expected N or A-B \(ASCII digits\)"):
            parse_seeds(bad)


def test_check_seeds_range_is_not_listed():
    import tracemalloc
    tracemalloc.start()
    try:
        check_seeds(range(10**7))  # listed, 10**7 seeds would be ~0.4 GB
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    huge = range(SEED_LIMIT)
    assert check_seeds(huge) is huge  # returned as it is: a range of 2**32 seeds costs nothing
    assert check_seeds(range(0)) == range(0)
    assert check_seeds(range(9, -1, -3)) == range(9, -1, -3)
    for bad, where in ((range(-1, 3), r"seeds\[0\] = -1"), (range(5, SEED_LIMIT + 1), r"seeds\[-1\] = 4294967296"),
                       (range(2**100), r"seeds\[-1\] = 1267650600228229401496703205375")):
        with pytest.raises(ValueError, match=where):
            check_seeds(bad)
    assert check_seeds(iter([3, 1])) == [3, 1]


def test_check_seeds_stream_is_bounded():
    import itertools
    with pytest.raises(ValueError, match=f"more than {MAX_SEEDS:,} seeds"):
        check_seeds(itertools.islice(itertools.count(), MAX_SEEDS + 1))  # refused at MAX_SEEDS, not listed on
