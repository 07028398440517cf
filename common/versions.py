"""What names a model version: TF Serving's rule, as pure functions (no TensorFlow, no disk).

A version is a directory (or a URL path segment) whose name is only ASCII digits and whose value
fits TF Serving's int64 (common/numerals.py: `str.isdigit()` is not that test). The server's
directory listing, its REST paths and the pusher can share this one definition.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

from common import numerals

INT64_MAX = 2 ** 63 - 1


def parse_version(name: str) -> Optional[int]:
    """The version a name stands for, or None when it names none (not ASCII digits, > int64)."""
    if not numerals.is_digits(name):
        return None
    # Bounded before int(): a 5,000-digit name must not reach Python's int() digit limit.
    if len(name.lstrip("0")) > len(str(INT64_MAX)):
        return None
    value = int(name)
    return value if value <= INT64_MAX else None


def split_version_names(names: Iterable[str]) -> Tuple[Dict[int, str], List[str]]:
    """({version: name} for names that are versions, [other names]), hidden names skipped.

    Hidden names (the pusher's `.N.incomplete` staging directories) are neither: they are
    expected and not worth a log line. Two names for one version ('1' and '01') keep the
    first in sorted order, so the answer does not depend on the listing's order.
    """
    versions: Dict[int, str] = {}
    ignored: List[str] = []
    for name in sorted(n.rstrip("/") for n in names):
        if not name or name.startswith("."):
            continue
        version = parse_version(name)
        if version is None or version in versions:
            ignored.append(name)
        else:
            versions[version] = name
    return versions, ignored
