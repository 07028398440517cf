"""What a run killed halfway leaves behind, found and cleared by the next run.

Every live run holds a shared fcntl lock on a file beside the metadata store for as long as it
runs; the kernel drops it when the process dies, however it dies. A starting run that can take
the lock exclusively knows no other run is alive, so any execution still RUNNING in ML Metadata
belongs to a dead run: it is marked FAILED (this ML Metadata has no ABANDONED state), with a
property saying why, so reports and later runs do not take it for work in progress.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import pathlib
from typing import Iterator, List

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

log = logging.getLogger("babyweight.dead_runs")

NODE_CONTEXT = "node"
ABANDONED_PROPERTY = "babyweight_abandoned"
_UNFINISHED = (metadata_store_pb2.Execution.RUNNING, metadata_store_pb2.Execution.NEW)


def lock_path(metadata_path: pathlib.Path) -> pathlib.Path:
    return metadata_path.with_name(metadata_path.name + ".runs.lock")


@contextlib.contextmanager
def live_run(metadata_path: pathlib.Path) -> Iterator[bool]:
    """Held for a run's lifetime; yields True when no other live run used the store.

    When alone, the run first clears what dead runs left in ML Metadata, still holding the lock
    exclusively so that no run starting meanwhile can begin work that would look abandoned.
    """
    metadata_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(metadata_path), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        if alone:
            abandon_unfinished(metadata_path)
        else:
            log.info("Another run is using %s; any step it has RUNNING is left to it",
                     metadata_path)
        fcntl.flock(handle, fcntl.LOCK_SH)  # held (shared) until the run ends
        try:
            yield alone
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def abandon_unfinished(metadata_path: pathlib.Path) -> List[int]:
    """Marks executions left RUNNING (or NEW) by dead runs FAILED; returns their ids."""
    if not metadata_path.is_file():
        return []
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    store = metadata_store.MetadataStore(config)
    stale = [e for e in store.get_executions() if e.last_known_state in _UNFINISHED]
    for execution in stale:
        log.warning("Marked %s (execution %d), left %s by a run that died, as FAILED",
                    _node_id(store, execution), execution.id,
                    metadata_store_pb2.Execution.State.Name(execution.last_known_state))
        execution.last_known_state = metadata_store_pb2.Execution.FAILED
        execution.custom_properties[ABANDONED_PROPERTY].string_value = (
            "the run's process died before this step finished")
    if stale:
        store.put_executions(stale)
    return [e.id for e in stale]


def _node_id(store: metadata_store.MetadataStore,
             execution: metadata_store_pb2.Execution) -> str:
    """The component id, from the node context TFX files the execution under."""
    for context in store.get_contexts_by_execution(execution.id):
        if context.type == NODE_CONTEXT and "." in context.name:
            return context.name.split(".", 1)[1]
    return execution.type
