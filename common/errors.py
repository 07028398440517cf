"""How a command fails: "the data failed validation" (exit code 2), and an error as one line.

A command never ends in a traceback for a failure it expects: `exit_code` turns the errors it
names into their message on stderr and a non-zero exit.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Tuple, Type


class DataValidationError(RuntimeError):
    """The data cannot be trained on; the message says why in plain words."""


class WarehouseBusyError(RuntimeError):
    """Another process (`warehouse.months` appending) holds the warehouse file's write lock
    for longer than a reader waits: not a fault of the data, so not a validation failure."""


def exit_code(step: Callable[[], Any], errors: Tuple[Type[BaseException], ...], code: int,
              prefix: str = "error") -> int:
    """0 when `step` returns; when it raises one of `errors`, `prefix: message` on stderr and
    `code`. Any other exception propagates: it is a bug, not a failure the command expects."""
    try:
        step()
    except errors as error:
        print(f"{prefix}: {error}", file=sys.stderr)
        return code
    return 0
