"""The on/off comparison's interval and verdicts (benchmarks/paired.py)."""
from __future__ import annotations

import math

import pytest

from benchmarks import paired


def test_the_interval_is_the_innermost_pair_that_holds_the_median_at_the_confidence() -> None:
    # 9 rounds: the second-lowest and second-highest, 1 - 2 * (1 + 9) / 512 of the time.
    low, high, coverage = paired.median_interval([5, 1, 9, 3, 7, 2, 8, 4, 6])
    assert (low, high) == (2, 8)
    assert math.isclose(coverage, 1 - 2 * (1 + 9) / 2 ** 9)
    # Too few rounds for 90%: the extremes, with what they cover.
    assert paired.median_interval([3, 1, 2]) == (1, 3, 1 - 2 / 2 ** 3)
    with pytest.raises(ValueError):
        paired.median_interval([])


def test_met_or_not_only_when_the_interval_is_on_one_side_of_the_bound() -> None:
    assert paired.verdict([1, 2, 3, -1, 0, 2, 1, 3, 2], 5).endswith(": met")
    assert paired.verdict([6, 7, 8, 9, 5.5, 6, 7, 8, 9], 5).endswith(": NOT met")
    undecided = paired.verdict([1, 2, 3, 8, 9, 2, 1, 3, 6], 5)
    assert "not decided" in undecided and "+3.0%" in undecided, undecided


def test_changes_are_each_rounds_own() -> None:
    assert paired.percent_changes([1.1, 2.0], [1.0, 2.5]) == pytest.approx([10.0, -20.0])
