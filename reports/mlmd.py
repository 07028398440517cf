"""What ML Metadata knows about each pipeline run: its components, their times and artifacts.

TFX records every run as a `pipeline_run` context holding one execution per component (cached
ones included, pointing at the artifacts they reused), so a run's report can be rebuilt from the
store at any later time, without the process that ran it.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import re
from typing import Any, Dict, List, Optional, Sequence

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

PIPELINE_CONTEXT = "pipeline"
RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"
State = metadata_store_pb2.Execution.State


@dataclasses.dataclass(frozen=True)
class ArtifactRef:
    """One artifact as a report needs it: where it is and what TFX wrote on it."""

    id: int
    type_name: str
    uri: str
    properties: Dict[str, Any]

    def split_names(self) -> List[str]:
        return json.loads(self.properties.get("split_names") or "[]")


@dataclasses.dataclass(frozen=True)
class ComponentRun:
    """One component's execution within a run."""

    node_id: str
    component_type: str
    state: str  # COMPLETE, CACHED, FAILED, RUNNING, NEW, CANCELED
    started: datetime.datetime
    finished: datetime.datetime
    parameters: Dict[str, Any]
    inputs: Dict[str, List[ArtifactRef]]
    outputs: Dict[str, List[ArtifactRef]]

    @property
    def seconds(self) -> float:
        return (self.finished - self.started).total_seconds()


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """A pipeline run as recorded in ML Metadata, components in the order they started."""

    run_id: str
    pipeline_name: str
    started: datetime.datetime
    components: List[ComponentRun]
    # Set by the caller when the run stopped before any component recorded its reports dir.
    known_reports_dir: Optional[pathlib.Path] = None

    @property
    def slug(self) -> str:
        """The run id as a file name (no ':' or '/')."""
        return slugify(self.run_id)

    @property
    def name(self) -> str:
        """What people call the run: its reports directory's name (the runner's timestamp)."""
        return self.reports_dir.name if self.reports_dir is not None else self.run_id

    @property
    def finished(self) -> datetime.datetime:
        return max((c.finished for c in self.components), default=self.started)

    @property
    def seconds(self) -> float:
        return (self.finished - self.started).total_seconds()

    def component(self, node_id: str) -> Optional[ComponentRun]:
        return next((c for c in self.components if c.node_id == node_id), None)

    def output(self, node_id: str, key: str) -> Optional[ArtifactRef]:
        """The artifact a component wrote (or reused from the cache) under `key`."""
        component = self.component(node_id)
        artifacts = component.outputs.get(key) if component else None
        return artifacts[0] if artifacts else None

    def input(self, node_id: str, key: str) -> Optional[ArtifactRef]:
        component = self.component(node_id)
        artifacts = component.inputs.get(key) if component else None
        return artifacts[0] if artifacts else None

    @property
    def failed(self) -> List[ComponentRun]:
        return [c for c in self.components if c.state == "FAILED"]

    @property
    def reports_dir(self) -> Optional[pathlib.Path]:
        """The per-run reports directory the runner gave the report-writing components."""
        for component in self.components:
            path = component.parameters.get("report_path")
            if path:
                return pathlib.Path(path).parent
        return self.known_reports_dir


def slugify(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-")


def open_store(metadata_path: pathlib.Path) -> metadata_store.MetadataStore:
    """A read-only connection: a report must never change the store it reads."""
    path = pathlib.Path(metadata_path)
    if not path.is_file():
        raise FileNotFoundError(f"no ML Metadata store at {path}; run the pipeline first "
                                "(`make` or `.venv/bin/python local_runner.py`)")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    try:
        return metadata_store.MetadataStore(config)
    except RuntimeError as error:  # not SQLite, or SQLite without ML Metadata's tables
        # Read-only, the store cannot create its tables: SQLite calls that a write it refused.
        reason = ("SQLite says: file is not a database" if "not a database" in str(error)
                  else "an SQLite file without ML Metadata's tables")
        raise NotAStoreError(f"{path} is not an ML Metadata store ({reason})") from error


class NotAStoreError(LookupError):
    """The metadata path is a file, but not a store: every command that reads runs says so."""


def _value(value: metadata_store_pb2.Value) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("struct_value", "proto_value"):
        return str(getattr(value, kind))
    return getattr(value, kind)


def _properties(entity: Any) -> Dict[str, Any]:
    values = {k: _value(v) for k, v in entity.properties.items()}
    values.update({k: _value(v) for k, v in entity.custom_properties.items()})
    return values


properties_of = _properties  # for an artifact read elsewhere than from a store


def _time(millis: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(millis / 1000.0, tz=datetime.timezone.utc)


def _node_names(store: metadata_store.MetadataStore) -> Dict[int, str]:
    """Execution id -> its node context's name ('<pipeline>.<component id>'), in a few queries."""
    names = {}
    for node in store.get_contexts_by_type(NODE_CONTEXT):
        for execution in store.get_executions_by_context(node.id):
            names[execution.id] = node.name
    return names


def _read_run(store: metadata_store.MetadataStore, context: metadata_store_pb2.Context,
              pipeline_name: str, type_names: Dict[int, str],
              node_names: Dict[int, str]) -> RunRecord:
    executions = store.get_executions_by_context(context.id)
    events = store.get_events_by_execution_ids([e.id for e in executions]) if executions else []
    artifact_ids = sorted({event.artifact_id for event in events})
    artifacts = {a.id: a for a in store.get_artifacts_by_id(artifact_ids)} if artifact_ids else {}
    components = []
    for execution in executions:
        node = node_names.get(execution.id, execution.type)
        inputs: Dict[str, List[ArtifactRef]] = {}
        outputs: Dict[str, List[ArtifactRef]] = {}
        for event in events:
            if event.execution_id != execution.id or event.artifact_id not in artifacts:
                continue
            if event.type in (metadata_store_pb2.Event.INPUT,):
                target = inputs
            elif event.type in (metadata_store_pb2.Event.OUTPUT,
                                metadata_store_pb2.Event.INTERNAL_OUTPUT,
                                metadata_store_pb2.Event.DECLARED_OUTPUT):
                target = outputs
            else:
                continue
            artifact = artifacts[event.artifact_id]
            ref = ArtifactRef(id=artifact.id, type_name=type_names.get(artifact.type_id, "?"),
                              uri=artifact.uri, properties=_properties(artifact))
            # One event may carry several keys (the Evaluator's model is also its baseline).
            keys = [step.key for step in event.path.steps if step.HasField("key")]
            for key in keys or [""]:
                target.setdefault(key, []).append(ref)
        components.append(ComponentRun(
            node_id=node.split(".", 1)[1] if node.startswith(pipeline_name + ".") else node,
            component_type=execution.type,
            state=State.Name(execution.last_known_state),
            started=_time(execution.create_time_since_epoch),
            finished=_time(execution.last_update_time_since_epoch),
            parameters=_properties(execution),
            inputs=inputs, outputs=outputs))
    components.sort(key=lambda c: (c.started, c.node_id))
    return RunRecord(run_id=context.name, pipeline_name=pipeline_name,
                     started=_time(context.create_time_since_epoch), components=components)


def _run_contexts(store: metadata_store.MetadataStore, pipeline_name: Optional[str]
                  ) -> List[tuple]:
    """(run context, pipeline name) pairs, newest first."""
    pipelines = store.get_contexts_by_type(PIPELINE_CONTEXT)
    if pipeline_name is not None:
        pipelines = [p for p in pipelines if p.name == pipeline_name]
    every_run = store.get_contexts_by_type(RUN_CONTEXT)
    if len(store.get_contexts_by_type(PIPELINE_CONTEXT)) == 1 and len(pipelines) == 1:
        # The usual store: one pipeline, so every run is one of its runs.
        return sorted(((run, pipelines[0].name) for run in every_run),
                      key=lambda pair: (pair[0].create_time_since_epoch, pair[0].id),
                      reverse=True)
    runs: Dict[int, tuple] = {}
    for pipeline in pipelines:
        execution_ids = [e.id for e in store.get_executions_by_context(pipeline.id)]
        for context in (store.get_contexts_by_execution(i) for i in execution_ids):
            for run in context:
                if run.type == RUN_CONTEXT:
                    runs[run.id] = (run, pipeline.name)
    # Runs that recorded no execution yet still exist: attribute them to the only pipeline.
    if len(pipelines) == 1:
        for run in every_run:
            runs.setdefault(run.id, (run, pipelines[0].name))
    return sorted(runs.values(), key=lambda pair: (pair[0].create_time_since_epoch,
                                                    pair[0].id), reverse=True)


def list_runs(store: metadata_store.MetadataStore, pipeline_name: Optional[str] = None,
              pipeline_root: Optional[pathlib.Path] = None) -> List[RunRecord]:
    """Every run of the store's pipelines (or of `pipeline_name`), newest first.

    With `pipeline_root`, only runs whose artifacts live under it (a store can outlive a
    root that was moved or wiped); LookupError when the store holds runs but none under it, so
    a mistyped root is not taken for a store without runs.
    """
    type_names = {t.id: t.name for t in store.get_artifact_types()}
    node_names = _node_names(store)
    records = [_read_run(store, context, name, type_names, node_names)
               for context, name in _run_contexts(store, pipeline_name)]
    if pipeline_root is not None:
        root = str(pathlib.Path(pipeline_root).resolve())
        kept = [r for r in records if _under_root(r, root)]
        if records and not kept:
            raise LookupError(
                f"the metadata store holds {len(records)} run{'s' * (len(records) != 1)}, and "
                f"none wrote its artifacts under {pipeline_root}; give the --pipeline-root "
                "the runs used, or none for every run")
        records = kept
    return records


def _under_root(record: RunRecord, root: str) -> bool:
    # A relative --pipeline-root gives relative artifact URIs (relative to the runner's cwd).
    uris = [a.uri if "://" in a.uri else os.path.abspath(a.uri)
            for c in record.components for refs in c.outputs.values() for a in refs]
    return not uris or any(uri == root or uri.startswith(root.rstrip("/") + "/")
                           for uri in uris)


def find_run(runs: Sequence[RunRecord], run_id: Optional[str]) -> RunRecord:
    """The run called `run_id` (its MLMD name, file-name form, reports-directory name, or a
    unique prefix of any of them); the newest run when `run_id` is None."""
    if not runs:
        raise LookupError("the metadata store holds no pipeline runs yet")
    if run_id is None:
        return runs[0]

    def names(run: RunRecord) -> List[str]:
        found = [run.run_id, run.slug]
        if run.reports_dir is not None:
            found.append(run.reports_dir.name)
        return found

    exact = [r for r in runs if run_id in names(r)]
    if exact:
        return exact[0]
    prefixed = [r for r in runs if any(n.startswith(run_id) for n in names(r))]
    if len(prefixed) == 1:
        return prefixed[0]
    known = ", ".join(r.run_id for r in runs[:10])
    if prefixed:
        raise LookupError(f"run id {run_id!r} is ambiguous: it starts "
                          f"{', '.join(r.run_id for r in prefixed)}")
    raise LookupError(f"no run {run_id!r} in the store; newest runs: {known}")
