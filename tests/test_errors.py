"""A command's expected failure is one line on stderr and its exit code; anything else is a bug."""
from __future__ import annotations

import pytest

from common.errors import exit_code


class Expected(RuntimeError):
    pass


def fail(error: BaseException) -> None:
    raise error


def test_an_expected_failure_is_its_message_and_its_code(capsys: pytest.CaptureFixture) -> None:
    assert exit_code(lambda: fail(Expected("no month in split(s) eval")), (Expected,), 2,
                     prefix="ExampleGen") == 2
    assert capsys.readouterr().err == "ExampleGen: no month in split(s) eval\n"


def test_success_is_zero_and_silent(capsys: pytest.CaptureFixture) -> None:
    assert exit_code(lambda: None, (Expected,), 1) == 0
    assert capsys.readouterr() == ("", "")


def test_an_unexpected_error_is_not_turned_into_an_exit_code() -> None:
    with pytest.raises(KeyError):
        exit_code(lambda: fail(KeyError("bug")), (Expected,), 1)
