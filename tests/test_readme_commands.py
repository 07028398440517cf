"""Every command block of README.md runs as written (tests/readme_checks.py says how each is
checked): the list of checks is the README's, and the `--source` run's part runs here, in a copy
of the project (the span runs' part: tests/test_readme_runs.py)."""
from __future__ import annotations

import shlex

import pytest

from tests.readme_checks import (BOTH, COMMANDS, README, SERVING, Copy, normalize,
                                 readme_commands, run_part)

pytest_plugins = ("tests.readme_checks",)


def test_every_readme_command_has_a_check() -> None:
    """A command added to the README must get a check here; a check whose command left the
    README must go; every check runs in one of the copies."""
    assert sorted(readme_commands(README.read_text())) == sorted(
        normalize(shlex.split(command)) for command in COMMANDS)
    assert all(check.parts and set(check.parts) <= set(BOTH) for check in COMMANDS.values())


@pytest.mark.slow
def test_the_source_run_and_what_reads_its_served_model_run_as_written(
        project: Copy, monkeypatch: pytest.MonkeyPatch) -> None:
    run_part(project, SERVING, monkeypatch)
    assert (project.root / "runs" / "vertex" / "babyweight_pipeline.json").is_file()
    assert (project.root / "predictions.jsonl").read_text().strip()
    assert (project.root / "predictions.csv").read_text().strip()
    assert (project.root / "eda.html").is_file()
