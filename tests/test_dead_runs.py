"""What a dead run left in ML Metadata is marked failed, and only when no other run is alive."""
import concurrent.futures
import fcntl
import pathlib

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

import local_runner
from pipelines import dead_runs
from reports import facts


def store_with_running_step(path: pathlib.Path):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    store = metadata_store.MetadataStore(config)
    type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name="Trainer"))
    context_type = store.put_context_type(metadata_store_pb2.ContextType(name="node"))
    (context,) = store.put_contexts([metadata_store_pb2.Context(
        type_id=context_type, name="babyweight.Trainer")])
    running = metadata_store_pb2.Execution(type_id=type_id,
                                           last_known_state=metadata_store_pb2.Execution.RUNNING)
    done = metadata_store_pb2.Execution(type_id=type_id,
                                        last_known_state=metadata_store_pb2.Execution.COMPLETE)
    ids = store.put_executions([running, done])
    store.put_attributions_and_associations(
        [], [metadata_store_pb2.Association(execution_id=i, context_id=context) for i in ids])
    return store, ids


def test_the_only_live_run_marks_steps_left_running_failed(tmp_path, caplog):
    store, (running, done) = store_with_running_step(tmp_path / "metadata.sqlite")
    with caplog.at_level("WARNING"):
        with dead_runs.live_run(tmp_path / "metadata.sqlite") as alone:
            assert alone
    first, second = store.get_executions_by_id([running, done])
    assert first.last_known_state == metadata_store_pb2.Execution.FAILED
    assert first.custom_properties[dead_runs.ABANDONED_PROPERTY].string_value
    assert second.last_known_state == metadata_store_pb2.Execution.COMPLETE
    assert f"Marked Trainer (execution {running})" in caplog.text
    assert dead_runs.ABANDONED_PROPERTY == facts.ABANDONED_PROPERTY


def test_a_step_another_live_run_holds_is_left_alone(tmp_path):
    store, (running, _) = store_with_running_step(tmp_path / "metadata.sqlite")
    with open(dead_runs.lock_path(tmp_path / "metadata.sqlite"), "a+") as other_run:
        fcntl.flock(other_run, fcntl.LOCK_SH)  # what a live run holds while it runs
        with dead_runs.live_run(tmp_path / "metadata.sqlite") as alone:
            assert not alone
    (execution,) = store.get_executions_by_id([running])
    assert execution.last_known_state == metadata_store_pb2.Execution.RUNNING


def test_runs_started_at_once_get_their_own_reports_dirs(tmp_path):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: local_runner.new_reports_dir(tmp_path), range(32)))
    assert len(set(made)) == len(made)
    assert all(path.is_dir() and not any(path.iterdir()) for path in made)
    later = local_runner.new_reports_dir(tmp_path)
    assert later.name > max(path.name for path in made), "names sort by start time"
