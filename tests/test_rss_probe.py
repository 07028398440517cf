"""The scale benchmark's process-tree accounting, on real process trees: memory counted once
per page however many processes share it, and CPU once per process whoever waits for it."""
from __future__ import annotations

import os
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
    """Starts SHARING, and returns the tree's memory as the probe reads it, and each process's
    unique set (USS), once all its children wait."""
    foreign = {child.pid for child in psutil.Process().children()}
    process = subprocess.Popen([sys.executable, "-c", SHARING, str(n_mb), str(children),
                                str(own_mb)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stdout.read(1) == b"R"
        members = rss_probe.RunTree(process.pid, foreign, 0.0).members()
        assert len(members) == children + 1
        return (rss_probe.tree_memory_bytes(members),
                [member.memory_full_info().uss for member in members])
    finally:
        process.communicate(b"")


@pytest.fixture(scope="module")
def baseline() -> Tuple[int, int]:
    """The tree without the buffers: its memory, and the tolerance of a comparison with another
    run. Two runs of the same program differ only in the pages each process writes besides the
    buffers (the interpreter's allocations, its stack, the copy-on-write copies a forked child
    makes of the pages it touches): at most all of them, the processes' unique sets, plus a
    page per buffer for its rounding to whole pages."""
    alone, unique = shared_tree(0, 3, 0)
    return alone, sum(unique) + 2 * resource.getpagesize()


def test_pages_a_forked_child_shares_are_counted_once(baseline: Tuple[int, int]) -> None:
    alone, tolerance = baseline
    tree, _ = shared_tree(256, 3, 0)
    # The parent's 256 MB once, not once per process as the resident sets would (4 x 256 MB).
    assert abs(tree - alone - 256 * MB) <= tolerance, (tree / MB, alone / MB, tolerance / MB)


def test_a_child_s_own_pages_add_to_the_shared_ones(baseline: Tuple[int, int]) -> None:
    alone, tolerance = baseline
    tree, _ = shared_tree(256, 3, 64)
    assert abs(tree - alone - (256 + 64) * MB) <= tolerance, (tree / MB, alone / MB,
                                                               tolerance / MB)


def test_a_component_s_peak_is_the_largest_memory_reading_inside_it() -> None:
    samples = [rss_probe.Sample(0.0, 100 * MB, 0.0), rss_probe.Sample(1.0, None, 1.0),
               rss_probe.Sample(2.0, 300 * MB, 2.0), rss_probe.Sample(3.0, 200 * MB, 3.0)]
    cost = rss_probe.cost_between(samples, 0.5, 2.5, 2.0)
    assert cost.peak_memory_mb == 300 and cost.memory_samples == 1
    # No reading inside: the larger of the readings either side, and it says there were none.
    cost = rss_probe.cost_between(samples, 0.5, 1.5, 1.0)
    assert cost.peak_memory_mb == 300 and cost.memory_samples == 0


# CPU: a runner whose processes burn BURN_SECONDS each, in every way a process can be started and
# ended: A waited for by the runner mid-run; B1 waited for by B, which runs until the runner
# exits; C killed by the runner and never waited for; D1 left by D's double fork (D exits at
# once), so not the runner's descendant. Each prints its own CPU seconds ("name seconds") once
# done; the runner prints "quiet" once all have, then waits for its stdin to end unless told
# not to (argv[2]), prints its own and exits.
TREE = r'''
import os, signal, sys, time
burn_seconds, wait = float(sys.argv[1]), sys.argv[2] == "wait"

def burn():
    while time.process_time() < burn_seconds:
        pass

def report(name):
    os.write(1, f"{name} {time.process_time()}\n".encode())

def child(body):
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid

def a():
    burn(); report("A")

os.waitpid(child(a), 0)
hold_r, hold_w = os.pipe()

def b():
    os.close(hold_w)
    def b1():
        burn(); report("B1")
    os.waitpid(child(b1), 0)
    report("B")
    os.read(hold_r, 1)  # until the runner exits

child(b)
done_r, done_w = os.pipe()

def c():
    burn(); report("C"); os.write(done_w, b"c"); signal.pause()

c_pid = child(c)
os.read(done_r, 1)
os.kill(c_pid, signal.SIGKILL)

def d():
    def d1():
        burn(); report("D1"); os.write(done_w, b"d")
    child(d1)

os.waitpid(child(d), 0)
os.read(done_r, 1)
report("runner")
os.write(1, b"quiet\n")
if wait:
    sys.stdin.read()
report("runner-end")
'''
BURN_SECONDS = 0.5
BURNERS = ("A", "B1", "C", "D1")
# /proc gives each process's user and system seconds, and its waited-for children's, in whole
# clock ticks, each rounded down: up to 4 ticks less per process read.
TICK = 1 / os.sysconf("SC_CLK_TCK")


def test_every_process_s_cpu_is_counted_once_whoever_waits_for_it() -> None:
    with rss_probe.adopting_orphans():
        foreign = {child.pid for child in psutil.Process().children()}
        before = rss_probe.reaped_cpu_seconds()
        process = subprocess.Popen([sys.executable, "-c", TREE, str(BURN_SECONDS), "wait"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        tree = rss_probe.RunTree(process.pid, foreign, before)
        assert process.stdout is not None and process.stdin is not None
        reports = dict(line.split() for line in iter(process.stdout.readline, "quiet\n"))
        members = tree.members()  # the runner, B, C (a zombie), and D1 (adopted, a zombie)
        tree.reap_adopted()  # D1, as init would have
        members = tree.members()
        mid_run = tree.cpu_seconds(members)
        process.stdin.close()
        reports.update(line.split() for line in process.stdout)
        assert process.wait() == 0
        assert tree.finish(linger=600) == 0  # B and C end by themselves once the runner has
        total = rss_probe.reaped_cpu_seconds() - before
    seconds = {name: float(value) for name, value in reports.items()}
    assert set(BURNERS) <= set(seconds) and min(seconds[n] for n in BURNERS) >= BURN_SECONDS
    # Mid-run: every burner's CPU is in, though B1's reaper B, and C, are not waited for yet
    # and D1 is no descendant of the runner.
    so_far = sum(value for name, value in seconds.items() if name != "runner-end")
    assert mid_run >= so_far - 4 * TICK * len(members), (mid_run, seconds)
    # The kernel's count once all were waited for holds them all, each once: the CPU spent
    # after the mid-run reading (the runner's and B's exits) is far less than one burner's.
    assert total >= sum(seconds[n] for n in seconds if n != "runner"), (total, seconds)
    assert mid_run - 4 * TICK * len(members) <= total <= mid_run + BURN_SECONDS / 2, (
        mid_run, total)


def test_the_sampled_total_is_the_kernel_s_and_leftovers_are_killed_and_counted() -> None:
    # The runner exits at "quiet"; a daemon it double-forked sleeps on: killed after the linger.
    daemon = TREE.replace('report("runner-end")', 'child(lambda: child(lambda: (os.close('
                          'hold_w), signal.pause())))\nreport("runner-end")')
    run = rss_probe.measure_tree([sys.executable, "-c", daemon, str(BURN_SECONDS), "no"],
                                 linger=0.5)
    assert run.exit_code == 0 and run.left_running == 1
    assert run.cpu_seconds >= len(BURNERS) * BURN_SECONDS
    cpu = [sample.cpu for sample in run.samples]
    assert cpu == sorted(cpu) and cpu[-1] == run.cpu_seconds
    # The samples while it ran reached the burners' CPU too (each sample's figure is at most
    # 4 ticks a process short); the runner lived past them all.
    assert max(cpu[:-1]) >= len(BURNERS) * BURN_SECONDS - 4 * TICK * 8, cpu
