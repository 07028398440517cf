"""The README's span windows' runs and the commands that read the runs (their reports, the
TensorBoard logs, the notebook) run as written, in a copy of the project of their own
(tests/readme_checks.py says how each is checked; tests/test_readme_commands.py runs the rest)."""
from __future__ import annotations

import pytest

from tests.readme_checks import RUNS, Copy, run_part

pytest_plugins = ("tests.readme_checks",)


@pytest.mark.slow
def test_the_span_runs_and_what_reads_the_runs_run_as_written(
        project: Copy, monkeypatch: pytest.MonkeyPatch) -> None:
    run_part(project, RUNS, monkeypatch)
    reports = sorted((project.root / "runs" / "reports").glob("2*"))
    assert len(reports) == 2, "one report per span run"
    assert all((report / "report.html").is_file() for report in reports)
    assert (project.root / "notebooks" / "model_analysis.html").is_file()
