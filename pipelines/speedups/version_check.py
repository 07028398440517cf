"""Each speed-up's library version range, checked when it starts; off, once, with a log line.

A speed-up that reaches into a library's private code was written against one release line of
that library; on another, the code it replaces may have moved or changed meaning. Rather than
fail a run (or silently patch the wrong thing), it checks the installed version first and, out
of range, leaves the stock path alone and says so once per process.
"""
from __future__ import annotations

import logging
import threading
from importlib import metadata
from typing import Dict, Tuple

from common.releases import describe, within

log = logging.getLogger("babyweight.speedups")

# Speed-up name -> (distribution, first version it was written for, first version it was not).
RANGES: Dict[str, Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = {
    "batched_reads": ("tfx-bsl", (1, 16), (1, 17)),
    "tfma_slicing": ("tensorflow-model-analysis", (0, 47), (0, 48)),
    "beam_introspection": ("apache-beam", (2, 61), (2, 62)),
    "forked_workers": ("apache-beam", (2, 61), (2, 62)),
    "autograph_rules": ("tensorflow", (2, 16), (2, 17)),
    "local_dependencies": ("tfx", (1, 16), (1, 17)),
}

_decided: Dict[str, bool] = {}
_lock = threading.Lock()


def in_effect(name: str) -> bool:
    """Whether speed-up `name` may run with the installed library (logged once when not)."""
    with _lock:
        if name not in _decided:
            distribution, first, after = RANGES[name]
            try:
                installed = metadata.version(distribution)
            except metadata.PackageNotFoundError:
                installed = ""
            ok = bool(installed) and within(installed, first, after)
            if not ok:
                log.warning("Speed-up %s is off: written for %s >=%s,<%s, found %s; the stock "
                            "code runs instead.", name, distribution, describe(first),
                            describe(after), installed or "none")
            _decided[name] = ok
        return _decided[name]


def forget() -> None:
    """Decide again on next use (for tests that change what is installed)."""
    with _lock:
        _decided.clear()
