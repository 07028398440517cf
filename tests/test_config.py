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


@dataclasses.dataclass(frozen=True)
class Bounded:
    """Settings with bounds, and one that its own check refuses."""

    count: int = setting(1, "how many", minimum=1)
    share: float = setting(0.5, "a share", above=0, maximum=1)
    sizes: Tuple[int, ...] = setting((1,), "sizes", minimum=1)
    name: str = setting("ok", "a name")

    def __post_init__(self) -> None:
        if self.name == "bad":
            raise ValueError("--name may not be 'bad'")


@pytest.mark.parametrize("argv, message", [
    (("--count", "0"), "--count must be at least 1, got 0"),
    (("--share", "0"), "--share must be above 0, got 0.0"),
    (("--share", "1.5"), "--share must be at most 1, got 1.5"),
    (("--share", "nan"), "--share must be a finite number, got nan"),
    (("--share", "inf"), "--share must be a finite number, got inf"),
    (("--sizes", "2", "0"), "--sizes must be at least 1, got 0"),
    (("--name", "bad"), "--name may not be 'bad'"),
])
def test_a_value_out_of_bounds_or_refused_is_a_usage_error(argv: Tuple[str, ...], message: str,
                                                            capsys: Any) -> None:
    parser = command_parser("example", None, Bounded)
    with pytest.raises(SystemExit) as exited:
        from_flags(Bounded, parser.parse_args(argv))
    assert exited.value.code == 2
    assert f"error: {message}" in capsys.readouterr().err
    assert from_flags(Bounded, parser.parse_args(["--count", "1", "--share", "1"])) == \
        Bounded(share=1.0)
