"""What a served model version was trained on, found through ML Metadata, never passed by hand.

The pusher writes `babyweight_push.json` into every version directory, naming the Model
artifact's MLMD id. From that artifact the lineage is: the Trainer execution that wrote it, the
examples it read, and the StatisticsGen execution that read the same examples; its statistics
artifact holds the training split's statistics, and the examples their eval split.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import List, Optional

from ml_metadata.proto import metadata_store_pb2

from reports import mlmd

PUSH_RECORD = "babyweight_push.json"  # pipelines.components.serving_pusher.PUSH_RECORD
STATISTICS_FILE = "FeatureStats.pb"
_OUTPUTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


class LineageError(LookupError):
    """The served model's training data cannot be found; the message says where it broke."""


@dataclasses.dataclass(frozen=True)
class Lineage:
    """A served version and the artifacts it descends from."""

    version: int
    version_dir: pathlib.Path
    model_id: int
    examples_uri: str
    statistics_uri: str

    def statistics_file(self, split: str = "train") -> pathlib.Path:
        return pathlib.Path(self.statistics_uri) / f"Split-{split}" / STATISTICS_FILE

    def examples_dir(self, split: str = "eval") -> pathlib.Path:
        return pathlib.Path(self.examples_uri) / f"Split-{split}"


def version_dir(model_dir: pathlib.Path, version: Optional[int]) -> pathlib.Path:
    """The version directory to monitor: `version`, or the newest (what the server serves)."""
    versions = sorted(int(p.name) for p in pathlib.Path(model_dir).glob("*")
                      if p.is_dir() and p.name.isdigit())
    if not versions:
        raise LineageError(f"no model version under {model_dir}; run the pipeline first")
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise LineageError(f"no version {chosen} under {model_dir}; versions: "
                           f"{', '.join(map(str, versions))}")
    return pathlib.Path(model_dir) / str(chosen)


def _executions_touching(store, artifact_id: int, kinds) -> List[int]:
    return [e.execution_id for e in store.get_events_by_artifact_ids([artifact_id])
            if e.type in kinds]


def _artifacts_of(store, execution_id: int, kinds, type_name: str) -> list:
    events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type in kinds]
    artifacts = store.get_artifacts_by_id([e.artifact_id for e in events]) if events else []
    types = {t.id: t.name for t in store.get_artifact_types()}
    return [a for a in artifacts if types.get(a.type_id) == type_name]


def find(model_dir: pathlib.Path, metadata_path: pathlib.Path,
         version: Optional[int] = None) -> Lineage:
    """The lineage of the served (or given) version; LineageError names the missing link."""
    directory = version_dir(model_dir, version)
    record_path = directory / PUSH_RECORD
    if not record_path.is_file():
        raise LineageError(f"{directory} has no {PUSH_RECORD}: it was not pushed by the "
                           "pipeline, so its training data is unknown")
    record = json.loads(record_path.read_text())
    if record.get("model_id") is None:
        raise LineageError(f"{record_path} names no ML Metadata artifact id: a Vertex AI run "
                           "pushed this version; read its lineage from Vertex ML Metadata "
                           "(--vertex-project)")
    model_id = int(record["model_id"])
    store = mlmd.open_store(metadata_path)
    models = store.get_artifacts_by_id([model_id])
    if not models:
        raise LineageError(f"version {directory.name}'s model (MLMD artifact {model_id}) is not "
                           f"in {metadata_path}: is this the pipeline's metadata store?")
    trainers = _executions_touching(store, model_id, _OUTPUTS)
    if not trainers:
        raise LineageError(f"no execution wrote model artifact {model_id} in {metadata_path}")
    examples = _artifacts_of(store, trainers[0], (metadata_store_pb2.Event.INPUT,), "Examples")
    if not examples:
        raise LineageError(f"the Trainer that wrote model {model_id} read no Examples")
    for execution_id in _executions_touching(store, examples[0].id,
                                             (metadata_store_pb2.Event.INPUT,)):
        statistics = _artifacts_of(store, execution_id, _OUTPUTS, "ExampleStatistics")
        if statistics:
            return Lineage(version=int(directory.name), version_dir=directory,
                           model_id=model_id, examples_uri=examples[0].uri,
                           statistics_uri=statistics[0].uri)
    raise LineageError(f"no StatisticsGen described the examples {examples[0].uri} that "
                       f"model {model_id} was trained on")
