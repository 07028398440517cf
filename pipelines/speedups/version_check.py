"""Each speed-up's library version range, checked when it starts; off, once, with a log line.

A speed-up that reaches into a library's private code was written against one release line of
that library; on another, the code it replaces may have moved or changed meaning. Rather than
fail a run (or silently patch the wrong thing), it checks the installed version first and, out
of range, leaves the stock path alone and says so once per process.
"""
from __future__ import annotations

import logging
import re
import threading
from importlib import metadata
from typing import Dict, Tuple

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


def _release(version: str) -> Tuple[int, ...]:
    """'2.16.2' -> (2, 16, 2); a pre-release suffix ('2.17.0rc1') ends the number."""
    parts = []
    for part in version.split("."):
        digits = re.match(r"[0-9]+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(part):
            break
    return tuple(parts)


def _describe(version: Tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def in_effect(name: str) -> bool:
    """Whether speed-up `name` may run with the installed library (logged once when not)."""
    with _lock:
        if name not in _decided:
            distribution, first, after = RANGES[name]
            try:
                installed = metadata.version(distribution)
            except metadata.PackageNotFoundError:
                installed = ""
            ok = bool(installed) and first <= _release(installed) < after
            if not ok:
                log.warning("Speed-up %s is off: written for %s >=%s,<%s, found %s; the stock "
                            "code runs instead.", name, distribution, _describe(first),
                            _describe(after), installed or "none")
            _decided[name] = ok
        return _decided[name]


def forget() -> None:
    """Decide again on next use (for tests that change what is installed)."""
    with _lock:
        _decided.clear()
