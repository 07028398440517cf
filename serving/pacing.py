"""Background threads' manners: give the GIL back often, and pace themselves while requests run.

Loading, warm-up and teardown of versions (serving/version_manager.py) run on one background
thread, the request log's writing (serving/request_log.py) on another; these keep them from
stalling the requests on the event loop.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator

# While a version loads or is torn down, the loader thread gives the GIL back this often
# (seconds), so the event loop waits less for it between requests; Python's default is 5 ms.
_LOADER_SWITCH_INTERVAL = 0.0005
# ... and, while a version serves, runs at most _BURST_S at a time, then sleeps long enough to
# take only its share of one core (a tenth by default: serving.settings' --load-cpu-share), in
# bursts shorter than a request, so requests keep the GIL and the cores (benchmarks/serving.py's
# switch part). A switch takes longer; the old version serves meanwhile.
_BURST_S = 0.0005
DEFAULT_CPU_SHARE = 0.1
_PAUSE_S = _BURST_S * (1.0 - DEFAULT_CPU_SHARE) / DEFAULT_CPU_SHARE


def pause_for_share(cpu_share: float, burst_s: float = _BURST_S) -> float:
    """The sleep after each burst that leaves this thread `cpu_share` of one core (0: none)."""
    return burst_s * (1.0 - cpu_share) / cpu_share if 0.0 < cpu_share < 1.0 else 0.0


class Pace:
    """Sleeps `pause_s` (releasing the GIL) once its thread has run `burst_s` since it last
    slept; called between small pieces of work, or as a profile hook (any arguments)."""

    def __init__(self, burst_s: float = _BURST_S, pause_s: float = _PAUSE_S) -> None:
        self.burst_s, self.pause_s = burst_s, pause_s
        self.pauses = 0
        self._resumed = time.perf_counter()

    def restart(self) -> None:
        """A new burst starts now (after the thread waited for work, say)."""
        self._resumed = time.perf_counter()

    def due(self) -> bool:
        """Whether the burst is over (the next call pauses)."""
        return time.perf_counter() - self._resumed > self.burst_s

    def __call__(self, *_: object) -> None:
        if self.due():
            time.sleep(self.pause_s)
            self.pauses += 1
            self._resumed = time.perf_counter()


@contextlib.contextmanager
def yielding_gil(throttle: bool, cpu_share: float = DEFAULT_CPU_SHARE) -> Iterator[None]:
    """Lowers the thread switch interval (process-wide) and, if `throttle`, paces this thread.

    The pacing is a profile hook on this thread only: at a Python or C function call after
    more than _BURST_S of work it sleeps until this thread has taken `cpu_share` of the time,
    releasing the GIL. Loading takes longer that way, which nobody waits for while the old
    version serves. A share of 1 (or more) does not pace.
    """
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, _LOADER_SWITCH_INTERVAL))
    pause = pause_for_share(cpu_share)
    throttle = throttle and pause > 0.0
    if throttle:
        sys.setprofile(Pace(pause_s=pause))
    try:
        yield
    finally:
        if throttle:
            sys.setprofile(None)
        sys.setswitchinterval(interval)
