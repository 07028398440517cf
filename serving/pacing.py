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
# ... and, while a version serves, runs at most _BURST_S at a time, then sleeps _PAUSE_S: a
# tenth of one core, in bursts shorter than a request, so requests keep the GIL and the cores
# (benchmarks/serving.py's switch part). A switch takes longer; the old version serves meanwhile.
_BURST_S, _PAUSE_S = 0.0005, 0.0045


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
def yielding_gil(throttle: bool) -> Iterator[None]:
    """Lowers the thread switch interval (process-wide) and, if `throttle`, paces this thread.

    The pacing is a profile hook on this thread only: at a Python or C function call after
    more than _BURST_S of work it sleeps _PAUSE_S, releasing the GIL. Loading takes longer
    that way, which nobody waits for while the old version serves.
    """
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, _LOADER_SWITCH_INTERVAL))
    if throttle:
        sys.setprofile(Pace())
    try:
        yield
    finally:
        if throttle:
            sys.setprofile(None)
        sys.setswitchinterval(interval)
