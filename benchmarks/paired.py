"""A paired comparison over alternating rounds: the median change and an interval for it.

Why: two server setups measured one after the other on a shared machine differ by the load of
the moment as much as by the setups. Each round measures both back to back (their order
alternating), so a round's change (A over B) sees one load; the rounds' median change comes
with a distribution-free interval (order statistics of the rounds' changes), and a target is
called met or not only when that whole interval is on one side of it.
"""
from __future__ import annotations

import math
import statistics
from typing import List, Sequence, Tuple


def median_interval(values: Sequence[float], confidence: float = 0.9
                    ) -> Tuple[float, float, float]:
    """(low, high, coverage): the innermost pair of order statistics that holds the median of
    the distribution with at least `confidence` (binomial, any distribution); with too few
    values for that, the smallest and largest, with their lower coverage."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("no rounds to compare")
    # [ordered[j], ordered[n-1-j]] misses the median when at most j values fall below it (or
    # above): 2 P(Binomial(n, 1/2) <= j).
    inner, outside = 0, 2 * 1 / 2 ** n
    while inner + 1 <= (n - 1) // 2:
        wider = outside + 2 * math.comb(n, inner + 1) / 2 ** n
        if 1 - wider < confidence:
            break
        inner, outside = inner + 1, wider
    return ordered[inner], ordered[n - 1 - inner], 1 - outside


def percent_changes(a: Sequence[float], b: Sequence[float]) -> List[float]:
    """Each round's change of `a` over `b`, in percent."""
    return [(x / y - 1) * 100 for x, y in zip(a, b)]


# A verdict needs an interval that holds the median 9 times in 10: with fewer rounds (1 to 4)
# the interval is every round's change and a single quiet round would decide.
LEAST_COVERAGE = 0.9


def verdict(changes: Sequence[float], bound: float, what: str = "rounds",
            least_coverage: float = LEAST_COVERAGE) -> str:
    """The median change, its interval, and whether it is under `bound` (percent): 'met' or
    'NOT met' only when the interval is wholly on one side and holds the median with at least
    `least_coverage`. `what` names the samples."""
    low, high, coverage = median_interval(changes)
    found = (f"{statistics.median(changes):+.1f}% ({what}' {coverage:.0%} interval "
             f"{low:+.1f}% to {high:+.1f}%, {len(changes)} {what})")
    if coverage < least_coverage:
        return (f"{found}; target under +{bound:g}%: not decided (too few {what} for a "
                f"{least_coverage:.0%} interval)")
    if high < bound:
        return f"{found}; target under +{bound:g}%: met"
    if low >= bound:
        return f"{found}; target under +{bound:g}%: NOT met"
    return (f"{found}; target under +{bound:g}%: not decided (the interval holds "
            f"+{bound:g}%; more {what} or a quieter machine)")
