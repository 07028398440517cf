"""Freezing the heap for Python's garbage collector, shared by everyone in the process.

`gc.freeze()` moves every tracked object into a generation that full collections skip: the local
runner does it for the length of a pipeline run, the server after loading a model. But `gc` has a
single frozen generation and no partial unfreeze, so one user's `gc.unfreeze()` would also thaw
what another froze. Both go through this module instead: `frozen()` nests and only unfreezes on
the way out of the outermost scope, and only if nothing was frozen when that scope began;
`refreeze()` (the server's) freezes for good, so no scope thaws it afterwards.
"""
from __future__ import annotations

import contextlib
import gc
import threading
from typing import Iterator

_lock = threading.RLock()
_depth = 0
_thaw_on_exit = False


@contextlib.contextmanager
def frozen() -> Iterator[None]:
    """Everything alive on entry is frozen while the scope lasts (outermost entry freezes)."""
    global _depth, _thaw_on_exit
    with _lock:
        if _depth == 0:
            # Frozen already (by refreeze(), or by code outside this module): that freeze was
            # meant to last, and gc cannot thaw only our part, so leave it all frozen.
            _thaw_on_exit = gc.get_freeze_count() == 0
            gc.freeze()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _thaw_on_exit:
                gc.unfreeze()


def refreeze() -> None:
    """Collects what became garbage, then freezes everything alive, for good.

    Outside any `frozen()` scope the frozen objects are thawed first, so the cycles of what was
    replaced since the last freeze (an old model version) can be collected. Inside one, thawing
    would undo that scope's freeze: only the unfrozen garbage is collected.
    """
    global _thaw_on_exit
    with _lock:
        if _depth == 0:
            gc.unfreeze()
        else:
            _thaw_on_exit = False
        gc.collect()
        gc.freeze()


def depth() -> int:
    """How many `frozen()` scopes are open (for tests and diagnostics)."""
    return _depth
