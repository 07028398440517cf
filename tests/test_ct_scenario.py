"""The continuous-training loop end to end at a small size: train, serve, shifted traffic
flagged, new spans ingested with a warm start and the gate, the server switched, the next
window clean (monitoring/scenario.py raises naming the step that did not do what it says)."""
from __future__ import annotations

import pathlib

import pytest

from monitoring import scenario
from serving import request_log
from tests.pipeline_helpers import FAST_TRAINING


@pytest.mark.slow
def test_the_loop_flags_the_shift_retrains_and_comes_back_clean(tmp_path: pathlib.Path,
                                                                capsys) -> None:
    work = tmp_path / "ct"
    code = scenario.main(["--work-dir", str(work), "--rows-per-month", "300",
                          "--new-rows-per-month", "600", "--port", "0",
                          *FAST_TRAINING])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.count("\n== ") == 10  # every step was printed
    assert "!! skew of gestation_weeks" in printed and "!! skew of mother_age" in printed
    pages = sorted((work / "reports" / "monitoring").glob("*/monitoring.html"))
    assert len(pages) == 2
    assert "threshold crossed" in pages[0].read_text() and "clean" in pages[1].read_text()
    versions = sorted(p.name for p in (work / "serving" / "babyweight").iterdir()
                      if p.name.isdigit())
    assert len(versions) == 2
    assert request_log.complete_files(work / "request_log")
    index = (work / "reports" / "index.html").read_text()
    assert all(f"{p.parent.name}/monitoring.html" in index for p in pages)


def test_a_work_dir_that_is_a_file_is_refused_in_words(tmp_path: pathlib.Path, capsys) -> None:
    work = tmp_path / "ct"
    work.write_text("a file\n")
    assert scenario.main(["--work-dir", str(work)]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: --work-dir {work} is a file, not a directory; give an empty or "
                   "absent directory\n")
    assert work.read_text() == "a file\n"
