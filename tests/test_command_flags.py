"""Each command refuses an impossible number as a usage error naming its flag (exit 2, before
any work), where it used to end in a traceback, an error from inside a library, or silence."""
from __future__ import annotations

from typing import Any, Callable, List

import pytest


def _local_runner(argv: List[str]) -> Any:
    import local_runner

    return local_runner.main(argv)


def _batch_predict(argv: List[str]) -> Any:
    from serving import batch_predict

    return batch_predict.main(["--input", "rows.jsonl", "--output", "out.jsonl", *argv])


def _local_predict(argv: List[str]) -> Any:
    from serving import local_predict

    return local_predict.main(["--json-instances", "rows.jsonl", *argv])


def _server(argv: List[str]) -> Any:
    from serving import server

    return server.main(argv)


def _generator(argv: List[str]) -> Any:
    from warehouse import generator

    return generator.main(argv)


@pytest.mark.parametrize("command, flag, value", [
    (_local_runner, "--epochs", "0"),
    (_local_runner, "--learning-rate", "nan"),
    (_local_runner, "--cache-examples-max-memory-fraction", "0"),
    (_batch_predict, "--batch-size", "0"),
    (_batch_predict, "--limit", "-1"),
    (_batch_predict, "--max-error-rate", "1.5"),
    (_local_predict, "--batch-size", "-3"),
    (_local_predict, "--max-error-rate", "-0.1"),
    (_server, "--max-batch-rows", "0"),
    (_server, "--batch-timeout-ms", "nan"),
    (_server, "--poll-seconds", "-1"),
    (_server, "--port", "70000"),
    (_generator, "--rows", "0"),
])
def test_an_impossible_number_is_refused_naming_its_flag(
        command: Callable[[List[str]], Any], flag: str, value: str, tmp_path: Any,
        monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)  # nothing a command might write lands in the checkout
    with pytest.raises(SystemExit) as exited:
        command([flag, value])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and f"error: {flag} must be" in err, err
    if command is not _local_runner:  # named as argparse names it in its own errors
        assert err.startswith("python -m "), err
    assert "Traceback" not in err and not list(tmp_path.iterdir())
