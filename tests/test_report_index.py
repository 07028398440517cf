"""The index of runs, built from the summary each run's page writes beside it: the same index as
from the runs' artifacts, built with no TensorFlow or TFMA loaded, and a run whose summary is
missing (a page of an older version) or no longer holds read the full way again."""
from __future__ import annotations

import json
import pathlib
import re
import shutil
from typing import Any, Iterator

import pytest

from reports import cli, mlmd
from tests.test_report_parts import heavy_libraries_after


def _without_time(html: str) -> str:
    """An index page less the moment it was written."""
    return re.sub(r"written [^<]*</p>", "written </p>", html)


@pytest.fixture(scope="module")
def runs_copy(pipeline_runs: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The runs' store and reports in a copy, each run's page and summary where an index of the
    copy looks for them (runs/<run>/: the store names the original reports directories)."""
    from reports import publisher, summaries
    from tests.pipeline_run_fixtures import copy_of

    with copy_of(pipeline_runs, tmp_path_factory.mktemp("index")) as copy:
        for record in publisher.Reports(copy.metadata_path, copy.reports_dir).runs:
            original = publisher.run_page_path(record, pipeline_runs.reports_dir)
            moved = publisher.run_page_path(record, copy.reports_dir)
            moved.parent.mkdir(parents=True, exist_ok=True)
            for path in (original, summaries.summary_path(original)):
                shutil.copy(path, moved.parent / path.name)
        yield copy


def test_index_from_summaries_equals_the_index_from_the_artifacts(runs_copy: Any) -> None:
    from reports import publisher, summaries

    reports = publisher.Reports(runs_copy.metadata_path, runs_copy.reports_dir)
    entries = reports.index_entries()
    full = publisher.Reports(runs_copy.metadata_path, runs_copy.reports_dir)
    read = [dict(entry, summary=summaries.of(full.facts(entry["summary"].record)))
            for entry in entries]
    assert [e["summary"] for e in entries] == [e["summary"] for e in read]
    # Newest first: the anomaly run (no model), then runs 2 and 1 with their metrics.
    assert [e["summary"].rmse is not None for e in entries] == [False, True, True]
    assert entries[1]["summary"].baseline_rmse is not None
    assert all(e["summary"].split_sizes.get("train") for e in entries)
    assert _without_time(reports.index_html(entries)) == _without_time(full.index_html(read))


# `python -m reports index` in a fresh interpreter: its exit code is checked by the helper.
_INDEX_COMMAND = """
import sys
import reports.cli
if reports.cli.main(["index", "--metadata-path", sys.argv[1], "--out", sys.argv[2]]) != 0:
    sys.exit("reports index failed")
"""


def test_index_command_loads_no_heavy_library(runs_copy: Any) -> None:
    """Every run has a page and a summary that holds: the index reads no artifact."""
    index = runs_copy.reports_dir / "index.html"
    before = index.stat().st_mtime_ns
    assert heavy_libraries_after(_INDEX_COMMAND, str(runs_copy.metadata_path),
                                 str(runs_copy.reports_dir)) == []
    assert index.stat().st_mtime_ns != before
    assert index.read_text().count('class="run-link"') == 3


def test_a_run_without_a_summary_that_holds_is_read_from_its_artifacts(runs_copy: Any) -> None:
    from reports import cli, publisher, summaries

    index = runs_copy.reports_dir / "index.html"
    assert cli.main(["index", "--metadata-path", str(runs_copy.metadata_path), "--out",
                     str(runs_copy.reports_dir)]) == 0
    shown = _without_time(index.read_text())
    runs = publisher.Reports(runs_copy.metadata_path, runs_copy.reports_dir).runs
    missing, stale = (summaries.summary_path(publisher.run_page_path(r, runs_copy.reports_dir))
                      for r in runs[1:])
    kept = {path: json.loads(path.read_text()) for path in (missing, stale)}
    missing.unlink()  # as a page written before summaries were
    changed = dict(kept[stale], rmse=0.0)  # written from an evaluation the run no longer holds
    changed["sources"] = dict(changed["sources"], Evaluator=["RUNNING", None])
    stale.write_text(json.dumps(changed))

    assert cli.main(["index", "--metadata-path", str(runs_copy.metadata_path), "--out",
                     str(runs_copy.reports_dir)]) == 0
    assert _without_time(index.read_text()) == shown
    assert {path: json.loads(path.read_text()) for path in kept} == kept


def test_a_reader_that_failed_leaves_no_summary(runs_copy: Any, tmp_path: pathlib.Path) -> None:
    """The next index reads the run again, instead of showing what the failure left out."""
    from reports import facts, publisher, summaries

    record = publisher.Reports(runs_copy.metadata_path, runs_copy.reports_dir).runs[1]
    page = tmp_path / "report.html"
    read = facts.collect(record)
    summaries.write(page, read)
    assert summaries.read(page, record) == summaries.of(read)
    read.unread.append("the evaluation metrics")
    summaries.write(page, read)
    assert not summaries.summary_path(page).exists()
    assert summaries.read(page, record) is None


def _store_with_one_run(path: pathlib.Path, artifact_uri: str) -> None:
    """A real ML Metadata store holding one run whose Trainer wrote a model at `artifact_uri`,
    recorded the way TFX records it (pipeline, run and node contexts)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    names = (mlmd.PIPELINE_CONTEXT, mlmd.RUN_CONTEXT, mlmd.NODE_CONTEXT)
    type_ids = [store.put_context_type(pb.ContextType(name=name)) for name in names]
    contexts = [pb.Context(type_id=type_ids[0], name="babyweight"),
                pb.Context(type_id=type_ids[1], name="2026-01-01T00:00:00.000001"),
                pb.Context(type_id=type_ids[2], name="babyweight.Trainer")]
    for context, context_id in zip(contexts, store.put_contexts(contexts)):
        context.id = context_id
    execution = pb.Execution(type_id=store.put_execution_type(pb.ExecutionType(name="Trainer")),
                             last_known_state=pb.Execution.COMPLETE)
    model = pb.Artifact(type_id=store.put_artifact_type(pb.ArtifactType(name="Model")),
                        uri=artifact_uri)
    event = pb.Event(type=pb.Event.OUTPUT)
    event.path.steps.add().key = "model"
    store.put_execution(execution, [(model, event)], contexts)


def test_a_pipeline_root_no_run_wrote_under_is_named_not_an_empty_index(
        tmp_path: pathlib.Path, capsys) -> None:
    store = tmp_path / "metadata.sqlite"
    _store_with_one_run(store, str(tmp_path / "root" / "Trainer" / "model" / "1"))
    flags = ["index", "--metadata-path", str(store), "--out", str(tmp_path / "reports"),
             "--no-warehouse"]
    assert cli.main(flags + ["--pipeline-root", str(tmp_path / "elsewhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "holds 1 run," in err and f"none wrote its artifacts under {tmp_path / 'elsewhere'}" \
        in err
    assert not (tmp_path / "reports" / "index.html").exists()
    assert cli.main(flags + ["--pipeline-root", str(tmp_path / "root")]) == 0
    assert "2026-01-01T00:00:00.000001" in (tmp_path / "reports" / "index.html").read_text()


@pytest.mark.parametrize("content, reason", [
    (b"not a database\n", "file is not a database"),
    (b"", "without ML Metadata's tables"),
])
def test_a_metadata_path_that_is_no_store_is_said_in_one_line(
        tmp_path: pathlib.Path, capsys, content: bytes, reason: str) -> None:
    path = tmp_path / "metadata.sqlite"
    path.write_bytes(content)
    with pytest.raises(mlmd.NotAStoreError, match=reason):
        mlmd.open_store(path)
    assert cli.main(["index", "--metadata-path", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {path} is not an ML Metadata store ({err.split('(', 1)[1]}"
    assert err.count("\n") == 1 and reason in err and path.read_bytes() == content
