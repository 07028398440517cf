"""The one way a speed-up changes a library: one attribute swapped for the length of a block."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional

from pipelines.speedups import version_check


@contextlib.contextmanager
def replaced(owner: Any, name: str, make: Callable[[Any], Any],
             patch: Optional[str] = None) -> Iterator[None]:
    """While inside, `owner.<name>` is `make(stock)`; the stock value is put back on the way
    out, whatever happened inside. With `patch` named, nothing is swapped unless that patch's
    version check passes (`version_check.in_effect`, which says once when it turns it off)."""
    if patch is not None and not version_check.in_effect(patch):
        yield
        return
    stock = getattr(owner, name)
    setattr(owner, name, make(stock))
    try:
        yield
    finally:
        setattr(owner, name, stock)
