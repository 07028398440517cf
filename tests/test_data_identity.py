"""Runs on different data say so: the run page against its baseline, comparisons on eval rows."""
import pytest

from reports import data_identity
from reports.publisher import Reports

pytestmark = pytest.mark.slow  # reads the shared three-run fixture


@pytest.fixture(scope="module")
def runs(pipeline_runs, tmp_path_factory):
    """The fixture's runs oldest first, read into reports written elsewhere (never changed)."""
    reports = Reports(pipeline_runs.metadata_path, tmp_path_factory.mktemp("identity"),
                      pipeline_runs.pipeline_root, with_warehouse=False)
    return reports, list(reversed(reports.runs))


def test_same_data_is_recognized_and_other_data_is_named(runs, pipeline_runs):
    _, (first, second, third) = runs
    assert data_identity.data_source(first) == data_identity.data_source(second)
    found = data_identity.differences(data_identity.data_source(first),
                                      data_identity.data_source(third))
    assert found and str(pipeline_runs.base / "bad.duckdb") in found[0]


def test_a_run_on_other_data_than_its_baseline_says_so(runs):
    reports, (first, second, third) = runs
    baseline = reports.facts(second).baseline_model_uri
    assert baseline == reports.facts(first).model_uri, "run 2 is judged against run 1's model"
    assert data_identity.baseline_note(reports.runs, second, baseline) is None
    assert not any("differs from that of run" in n for n in reports.facts(second).notes)
    # Run 3 stopped before evaluation; had it been judged against run 1's model:
    note = data_identity.baseline_note(reports.runs, third, baseline)
    assert note is not None and first.name in note and "bad.duckdb" in note


def test_comparing_runs_evaluated_on_other_rows_warns(runs):
    reports, (first, second, third) = runs
    statistics = {r.run_id: reports.facts(r).statistics for r in (first, second, third)}
    assert data_identity.rows_warning(statistics[first.run_id], statistics[second.run_id]) is None
    warning = data_identity.rows_warning(statistics[second.run_id], statistics[third.run_id])
    assert warning is not None and "evaluated on different rows" in warning
    page = reports.write_compare(second, third).read_text()
    assert "evaluated on different rows" in page
    assert "evaluated on different rows" not in reports.write_compare(first, second).read_text()
