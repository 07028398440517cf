"""The loader thread's manners: give the GIL back often, and pace itself while a version serves.

Loading, warm-up and teardown of versions (serving/version_manager.py) run on one background
thread; these keep them from stalling the requests on the event loop.
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
    clock, sleep = time.perf_counter, time.sleep
    resumed = clock()
    pause = _BURST_S * (1.0 - cpu_share) / cpu_share if 0.0 < cpu_share < 1.0 else 0.0

    def pace(*_: object) -> None:
        nonlocal resumed
        if clock() - resumed > _BURST_S:
            sleep(pause)
            resumed = clock()

    throttle = throttle and pause > 0.0
    if throttle:
        sys.setprofile(pace)
    try:
        yield
    finally:
        if throttle:
            sys.setprofile(None)
        sys.setswitchinterval(interval)
