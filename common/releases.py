"""A library's release line, read from its version string: for the checks of code written
against one release line of a library's private API (pipelines/speedups/version_check.py,
serving/session_callable.py), one reading of '2.16.2' or '2.17.0rc1' for both."""
from __future__ import annotations

import re
from typing import Tuple

Release = Tuple[int, ...]


def release(version: str) -> Release:
    """'2.16.2' -> (2, 16, 2); a pre-release suffix ('2.17.0rc1') ends the number: (2, 17, 0)."""
    parts = []
    for part in version.split("."):
        digits = re.match(r"[0-9]+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(part):
            break
    return tuple(parts)


def within(version: str, first: Release, after: Release) -> bool:
    """Whether `version` is at or after release line `first` and before `after`."""
    return first <= release(version) < after


def describe(version: Release) -> str:
    return ".".join(map(str, version))
