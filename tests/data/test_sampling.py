"""The placement math behind disjoint sets, checked against brute force."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from calibench.data.sampling import deal_into_sets, intervals_overlap, max_disjoint_windows, place_disjoint_windows


def all_placements(stream_len: int, count: int, length: int) -> set[tuple[int, ...]]:
    """Every sorted tuple of non-overlapping window starts, by exhaustive search."""
    found = set()
    for starts in itertools.combinations(range(stream_len - length + 1), count):
        if all(b - a >= length for a, b in zip(starts, starts[1:])):
            found.add(starts)
    return found


@pytest.mark.parametrize("stream_len,count,length", [(10, 2, 3), (12, 3, 2), (7, 1, 7), (9, 3, 3)])
def test_placement_is_uniform_over_all_disjoint_placements(stream_len, count, length):
    expected = all_placements(stream_len, count, length)
    rng = np.random.default_rng(0)
    draws = 4000
    seen = Counter(tuple(place_disjoint_windows(stream_len, count, length, rng).tolist()) for _ in range(draws))
    assert set(seen) == expected  # every placement reachable, nothing else
    mean = draws / len(expected)
    # chi-square-like bound: each placement's frequency within 5 sigma of uniform
    for freq in seen.values():
        assert abs(freq - mean) < 5 * np.sqrt(mean) + 1


def test_placement_fails_when_windows_do_not_fit():
    assert max_disjoint_windows(100, 30) == 3
    with pytest.raises(ValueError):
        place_disjoint_windows(100, 4, 30, np.random.default_rng(0))


def test_deal_into_sets_partitions_indices():
    groups = deal_into_sets(30, 10, np.random.default_rng(1))
    assert len(groups) == 3 and all(len(g) == 10 for g in groups)
    assert sorted(np.concatenate(groups).tolist()) == list(range(30))


def test_intervals_overlap_detects_shared_positions():
    assert not intervals_overlap([(-1, 0, 5), (-1, 5, 5)])
    assert intervals_overlap([(-1, 0, 5), (-1, 4, 5)])
    assert not intervals_overlap([(1, 0, 5), (2, 0, 5)])  # different documents
    assert intervals_overlap([(3, 10, 5), (3, 0, 11)])
