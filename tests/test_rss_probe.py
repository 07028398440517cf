"""The scale benchmark's process-tree accounting, on real process trees: memory counted once
per page however many processes share it."""
from __future__ import annotations

import resource
import subprocess
import sys
from typing import List, Tuple

import psutil
import pytest

from benchmarks import rss_probe

MB = 2**20
# A parent that writes N MB, forks K children that each wait until the parent closes a pipe (the
# first of them writing M MB of its own first), and prints "R" once they all wait; it ends
# when its stdin does.
SHARING = r'''
import os, sys
n, k, m = int(sys.argv[1]) << 20, int(sys.argv[2]), int(sys.argv[3]) << 20
held = b"\x01" * n  # written, so resident
hold_r, hold_w = os.pipe()
ready_r, ready_w = os.pipe()
pids = []
for i in range(k):
    pid = os.fork()
    if pid == 0:
        os.close(hold_w)
        own = b"\x02" * (m if i == 0 else 0)
        os.write(ready_w, b"r")
        os.read(hold_r, 1)  # returns when the parent closes its end
        os._exit(0)
    pids.append(pid)
for _ in range(k):
    os.read(ready_r, 1)
sys.stdout.write("R")
sys.stdout.flush()
sys.stdin.read()
os.close(hold_w)
for pid in pids:
    os.waitpid(pid, 0)
'''


def shared_tree(n_mb: int, children: int, own_mb: int) -> Tuple[int, List[int]]:
    """Starts SHARING, and returns the tree's PSS as the probe reads it, and each process's
    unique set (USS), once all its children wait."""
    process = subprocess.Popen([sys.executable, "-c", SHARING, str(n_mb), str(children),
                                str(own_mb)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stdout.read(1) == b"R"
        members = rss_probe.tree_members(psutil.Process(process.pid))
        assert len(members) == children + 1
        return (rss_probe.tree_pss_bytes(members),
                [member.memory_full_info().uss for member in members])
    finally:
        process.communicate(b"")


@pytest.fixture(scope="module")
def baseline() -> Tuple[int, int]:
    """The tree without the buffers: its PSS, and the tolerance of a comparison with another
    run. Two runs of the same program differ only in the pages each process writes besides the
    buffers (the interpreter's allocations, its stack, the copy-on-write copies a forked child
    makes of the pages it touches): at most all of them, the processes' unique sets, plus a
    page per buffer for its rounding to whole pages."""
    pss, unique = shared_tree(0, 3, 0)
    return pss, sum(unique) + 2 * resource.getpagesize()


def test_pages_a_forked_child_shares_are_counted_once(baseline: Tuple[int, int]) -> None:
    pss, tolerance = baseline
    tree, _ = shared_tree(256, 3, 0)
    # The parent's 256 MB once, not once per process as the resident sets would (4 x 256 MB).
    assert abs(tree - pss - 256 * MB) <= tolerance, (tree / MB, pss / MB, tolerance / MB)


def test_a_child_s_own_pages_add_to_the_shared_ones(baseline: Tuple[int, int]) -> None:
    pss, tolerance = baseline
    tree, _ = shared_tree(256, 3, 64)
    assert abs(tree - pss - (256 + 64) * MB) <= tolerance, (tree / MB, pss / MB, tolerance / MB)


def test_a_component_s_peak_is_the_largest_memory_reading_inside_it() -> None:
    samples = [rss_probe.Sample(0.0, 100 * MB, 0.0), rss_probe.Sample(1.0, None, 1.0),
               rss_probe.Sample(2.0, 300 * MB, 2.0), rss_probe.Sample(3.0, 200 * MB, 3.0)]
    cost = rss_probe.cost_between(samples, 0.5, 2.5, 2.0)
    assert cost.peak_pss_mb == 300 and cost.memory_samples == 1
    # No reading inside: the larger of the readings either side, and it says there were none.
    cost = rss_probe.cost_between(samples, 0.5, 1.5, 1.0)
    assert cost.peak_pss_mb == 300 and cost.memory_samples == 0
