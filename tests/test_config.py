"""Flags generated from typed settings: values after a flag for a tuple field, and --help showing
each default as it would be typed."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import pytest

from common.config import command_parser, from_flags, setting


@dataclasses.dataclass(frozen=True)
class Example:
    """Settings of each kind."""

    sizes: Tuple[int, ...] = setting((10, 20), "rows per measurement")
    extra_sizes: Tuple[int, ...] = setting((5,), "more rows, or none", nargs="*")
    limit: Optional[int] = setting(None, "most rows; default: no limit")
    note: str = setting("", "a line under the table")


def parsed(*argv: str) -> Example:
    return from_flags(Example, command_parser("example", None, Example).parse_args(argv))


def test_a_tuple_field_takes_its_values_after_the_flag() -> None:
    assert parsed() == Example()
    config = parsed("--sizes", "1", "2", "3", "--extra-sizes")
    assert config.sizes == (1, 2, 3) and config.extra_sizes == ()
    with pytest.raises(SystemExit):  # nargs "+": at least one value
        parsed("--sizes")


def test_help_shows_defaults_as_typed_and_leaves_none_to_the_help_text(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        parsed("--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "rows per measurement (default: 10 20)" in text
    assert "more rows, or none (default: 5)" in text
    assert "a line under the table (default: '')" in text
    assert "most rows; default: no limit" in text and "None" not in text
