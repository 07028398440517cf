"""Numbers written as text, by their ASCII syntax only: one definition for every reader.

Python's int() and float() read more than that: '4_0' as 40, full-width '２６' as 26,
Arabic-Indic '٣' as 3; `str.isdigit()` also accepts '²' and '①'. A version name, a CSV cell
or a table value so spelled is a mistake, and read as a number it would be served as one.
"""
from __future__ import annotations

import re
from typing import Optional

_DIGITS = re.compile(r"[0-9]+")
_INTEGER = re.compile(r"[+-]?[0-9]+")
# Also the SQL readers' rule (warehouse/engine.py), so a CSV cell is a number where a request's
# text is one; the syntax is the same in Python's re and in DuckDB's RE2.
DECIMAL_PATTERN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_DECIMAL = re.compile(DECIMAL_PATTERN)


def is_digits(text: str) -> bool:
    """Only ASCII digits, at least one."""
    return _DIGITS.fullmatch(text) is not None


def integer(text: str) -> Optional[int]:
    """`text` (spaces around it allowed) as an int when it is an ASCII integer, else None."""
    stripped = text.strip()
    if not _INTEGER.fullmatch(stripped):
        return None
    try:
        return int(stripped)
    except ValueError:  # more digits than Python's int() reads from text
        return None


def decimal(text: str) -> Optional[float]:
    """`text` (spaces around it allowed) as a float when it is an ASCII decimal number
    (26, -3.5, .5, 1e3), else None: not 'nan', 'inf', '4_0' or other digits."""
    stripped = text.strip()
    return float(stripped) if _DECIMAL.fullmatch(stripped) else None
