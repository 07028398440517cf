"""A run publishes its own report, also when another run on the same metadata store is newer
(two runs at once): the runner names its run in ML Metadata and publishes that run's page."""
import logging
import pathlib

import local_runner
from common.config import PipelineConfig
from reports import mlmd


from tfx.orchestration.local.local_dag_runner import LocalDagRunner


class _Recorder(LocalDagRunner):
    """LocalDagRunner that keeps the compiled pipeline it was asked to run, and runs nothing."""

    compiled: list = []

    def run_with_ir(self, pipeline, run_options=None):
        self.compiled.append(pipeline)


def test_the_pipeline_runs_under_the_id_the_runner_chose(tmp_path):
    from tests.test_pipeline_definition import build

    first = local_runner.new_reports_dir(tmp_path / "reports")
    second = local_runner.new_reports_dir(tmp_path / "reports")
    assert local_runner.run_id_of(first) != local_runner.run_id_of(second)
    local_runner.named_run(_Recorder, local_runner.run_id_of(second)).run(build(tmp_path))
    (ir,) = _Recorder.compiled
    run_id = ir.runtime_spec.pipeline_run_id
    assert run_id.WhichOneof("value") == "field_value", run_id
    assert run_id.field_value.string_value == local_runner.run_id_of(second)


def test_each_shared_run_is_recorded_under_its_reports_dir_s_id(pipeline_runs):
    runs = mlmd.list_runs(mlmd.open_store(pipeline_runs.metadata_path))
    assert len(runs) == 3
    assert [r.run_id for r in runs] == [local_runner.run_id_of(r.reports_dir) for r in runs]


def test_an_older_run_publishes_its_own_page_not_the_newest(pipeline_runs, tmp_path, caplog):
    runs = mlmd.list_runs(mlmd.open_store(pipeline_runs.metadata_path))
    oldest, newest = runs[-1], runs[0]
    settings = PipelineConfig(pipeline_root=pipeline_runs.pipeline_root,
                              metadata_path=pipeline_runs.metadata_path,
                              reports_dir=tmp_path / "reports")
    with caplog.at_level(logging.INFO, logger="babyweight.local_runner"):
        local_runner.publish_reports(settings, oldest.reports_dir, oldest.run_id)
    page = tmp_path / "reports" / "runs" / oldest.slug / "report.html"
    assert f"Report:    {page.resolve().as_uri()}" in caplog.text, caplog.text
    html = page.read_text()
    assert oldest.run_id in html and newest.run_id not in html
