"""Every benchmark command the README, the Makefile and the benchmarks' own docstrings show
parses with that benchmark's flags, and the benchmarks run as scripts too.

The benchmarks run for minutes, so nothing else would notice a documented flag that a change
removed or renamed: here each command is parsed by the benchmark's own `main` up to the point
where it would start measuring.
"""
from __future__ import annotations

import ast
import importlib
import os
import re
import shlex
import subprocess
import sys
from typing import Any, List, Tuple

import pytest

from benchmarks import harness
from common.config import PROJECT_ROOT

BENCHMARKS = PROJECT_ROOT / "benchmarks"
COMMAND = re.compile(r"python -m benchmarks\.(\w+)([^`\n]*)")


class Parsed(Exception):
    """Raised in place of measuring, carrying what the command line parsed into."""


def documented_commands() -> List[Tuple[str, str, str]]:
    """(where, benchmark, flags) of each `python -m benchmarks.<name> ...` written down."""
    texts = [(path.name, path.read_text())
             for path in (PROJECT_ROOT / "README.md", PROJECT_ROOT / "Makefile")]
    texts += [(path.name, ast.get_docstring(ast.parse(path.read_text())) or "")
              for path in sorted(BENCHMARKS.glob("*.py"))]
    found = []
    for where, text in texts:
        for name, flags in COMMAND.findall(text):
            flags = flags.split(" (")[0].strip()  # prose after the command, in the README
            found.append((where, name, flags))
    return found


def test_the_documented_commands_include_every_benchmark() -> None:
    runnable = {path.stem for path in BENCHMARKS.glob("*.py")
                if "def main(" in path.read_text() and path.stem != "beam_mode_run"}
    assert runnable <= {name for _, name, _ in documented_commands()}


@pytest.mark.parametrize("where, name, flags", documented_commands())
def test_a_documented_command_parses(monkeypatch: Any, where: str, name: str,
                                     flags: str) -> None:
    parse = harness.parse

    def parse_and_stop(*args: Any) -> None:
        raise Parsed(parse(*args))

    monkeypatch.setattr(harness, "parse", parse_and_stop)
    module = importlib.import_module(f"benchmarks.{name}")
    argv = shlex.split(flags.replace("[", "").replace("]", ""))  # [optional] flags too
    if "--help" in argv:
        with pytest.raises(SystemExit) as done:
            module.main(argv)
        assert done.value.code == 0
        return
    with pytest.raises(Parsed) as parsed:
        module.main(argv)
    *configs, output = parsed.value.args[0]
    assert isinstance(output, harness.Output) and configs
    assert output.write is ("--no-write" not in flags)


# benchmarks/serving.py and benchmarks/monitoring.py share their names with the serving and
# monitoring packages, which a script's own folder on sys.path would hide: those two run
# with -m only, as documented.
@pytest.mark.parametrize("name", ["beam_modes", "data_stages", "model_quality",
                                  "pipeline_speed", "scale"])
def test_a_benchmark_runs_as_a_script(name: str) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), "--help"],
                          capture_output=True, text=True, check=False, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert done.returncode == 0, done.stderr
    assert f"python -m benchmarks.{name}" in done.stdout and "--no-write" in done.stdout


def test_no_benchmark_module_hides_a_package_it_imports() -> None:
    """Run as a script, a benchmark sees its own folder first on sys.path."""
    packages = {path.parent.name for path in PROJECT_ROOT.glob("*/__init__.py")}
    shadowing = {path.stem for path in BENCHMARKS.glob("*.py")} & packages
    assert shadowing <= {"serving", "monitoring"}, shadowing


@pytest.mark.parametrize("name, flags, named", [
    ("serving", ["--clients", "1,x"], "--clients"),
    ("serving", ["--clients", ""], "--clients"),
    ("serving", ["--overhead-clients", "8,-1"], "--overhead-clients"),
    ("monitoring", ["--clients", ""], "--clients"),
    ("monitoring", ["--sizes", "0"], "--sizes")])
def test_a_malformed_list_of_counts_is_a_usage_error(capsys: Any, name: str, flags: List[str],
                                                      named: str) -> None:
    """Exit 2 and the flag named, before any server starts or model loads."""
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit) as done:
        module.main(flags)
    assert done.value.code == 2
    assert f"error: {named} takes comma-separated positive whole numbers" in \
        capsys.readouterr().err


def test_an_empty_overhead_list_skips_that_part() -> None:
    from benchmarks import serving

    (config, _) = serving.parse_args(["--overhead-clients", ""])
    assert config.overhead_levels() == [] and config.levels() == [1, 8, 32]


def test_the_table_note_counts_the_on_off_rounds_that_run() -> None:
    """measure_servers runs at least one round, on at most one pair of servers per round."""
    from benchmarks import serving, serving_report

    (config, _) = serving.parse_args(["--overhead-rounds", "0", "--overhead-pairs", "3"])
    assert "medians of 1 rounds" in serving_report._on_off_rounds(config)
    assert "on 1 pairs" in serving_report._on_off_rounds(config)
    (config, _) = serving.parse_args(["--overhead-rounds", "9", "--overhead-pairs", "3"])
    assert "medians of 9 rounds" in serving_report._on_off_rounds(config)
    assert "on 3 pairs" in serving_report._on_off_rounds(config)
