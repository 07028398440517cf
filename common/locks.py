"""Taking an fcntl lock within a time limit: the push lock and the request log's publish lock
wait for another process's hold a while, then say who held it, rather than hang."""
from __future__ import annotations

import fcntl
import time
from typing import IO, Union

POLL_SECONDS = 0.05


def flock_within(handle: Union[int, IO[str]], mode: int, seconds: float) -> bool:
    """Takes `mode` (fcntl.LOCK_EX or LOCK_SH) on `handle`, trying again until `seconds` have
    passed (0: once); False when it is still held by another process then. An fcntl lock dies
    with its process, so a holder killed halfway never keeps it."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
