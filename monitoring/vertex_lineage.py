"""The lineage of a version a Vertex AI run pushed, read from Vertex ML Metadata.

The same walk as monitoring/lineage.py, on the store Vertex AI Pipelines records into: the push
record names the Model artifact's gs:// URI; Vertex ML Metadata gives the artifact with that
URI and the lineage around it (aiplatform's metadata API); in it, the Trainer execution that
wrote the model, the Examples it read, and the StatisticsGen execution that read the same
Examples and wrote the statistics. Artifacts are then read as files through a Cloud Storage
FUSE mount (common/gcs.py), so the monitoring code reads them as it reads a local run's.
"""
from __future__ import annotations

import json
import pathlib
import zlib
from typing import Any, Dict, List, Optional

from common.gcs import mounted
from monitoring.lineage import PUSH_RECORD, Lineage, LineageError, version_dir

MODEL, EXAMPLES, STATISTICS = "tfx.Model", "tfx.Examples", "tfx.ExampleStatistics"
# model <- Trainer <- examples -> StatisticsGen -> statistics
LINEAGE_HOPS = 4
_INPUT, _OUTPUT = 1, 2  # google.cloud.aiplatform_v1.types.Event.Type


def _numeric_id(resource_name: str) -> int:
    """The artifact's id in its resource name, as the int Lineage.model_id is."""
    tail = resource_name.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else zlib.crc32(resource_name.encode())


class _Graph:
    """A LineageSubgraph by resource name: artifacts, and events by execution and artifact."""

    def __init__(self, subgraph: Any) -> None:
        self.artifacts = {a.name: a for a in subgraph.artifacts}
        self.events = list(subgraph.events)

    def executions_with(self, artifact: str, kind: int) -> List[str]:
        return [e.execution for e in self.events if e.artifact == artifact and int(e.type_) == kind]

    def artifacts_of(self, execution: str, kind: int, schema_title: str) -> List[Any]:
        names = [e.artifact for e in self.events
                 if e.execution == execution and int(e.type_) == kind]
        return [self.artifacts[n] for n in names
                if n in self.artifacts and self.artifacts[n].schema_title == schema_title]


def _push_record(directory: pathlib.Path) -> Dict[str, Any]:
    path = directory / PUSH_RECORD
    if not path.is_file():
        raise LineageError(f"{directory} has no {PUSH_RECORD}: it was not pushed by the "
                           "pipeline, so its training data is unknown")
    record = json.loads(path.read_text())
    if not str(record.get("model_uri", "")).startswith("gs://"):
        raise LineageError(f"{path} names no gs:// model: this version was not pushed by a "
                           "Vertex AI run; leave out --vertex-project to read the local store")
    return record


def _model_and_graph(model_uri: str, project: str, region: str, version: str) -> tuple:
    """The Model artifact and the lineage around it; a client failure as a LineageError."""
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import aiplatform

    try:
        model = aiplatform.Artifact.get_with_uri(model_uri, project=project, location=region)
        subgraph = model.api_client.query_artifact_lineage_subgraph(
            artifact=model.resource_name, max_hops=LINEAGE_HOPS)
    except ValueError as error:
        raise LineageError(f"version {version}'s model {model_uri} is not in Vertex ML "
                           f"Metadata of project {project} in {region}: {error}") from None
    except auth_exceptions.GoogleAuthError as error:
        raise LineageError(f"no Google Cloud credentials to read Vertex ML Metadata ({error}); "
                           "run `gcloud auth application-default login`") from None
    except api_exceptions.GoogleAPICallError as error:
        raise LineageError(f"Vertex ML Metadata of project {project} in {region} refused "
                           f"the lineage query: {error}") from None
    return model, _Graph(subgraph)


def find(model_dir: pathlib.Path, project: str, region: str, version: Optional[int] = None,
         gcs_mount: Optional[str] = None) -> Lineage:
    """The lineage of the served (or given) version; LineageError names the missing link."""
    directory = version_dir(model_dir, version)
    model_uri = _push_record(directory)["model_uri"]
    model, graph = _model_and_graph(model_uri, project, region, directory.name)
    trainers = graph.executions_with(model.resource_name, _OUTPUT)
    if not trainers:
        raise LineageError(f"no execution wrote model {model_uri} in Vertex ML Metadata")
    examples = graph.artifacts_of(trainers[0], _INPUT, EXAMPLES)
    if not examples:
        raise LineageError(f"the Trainer that wrote model {model_uri} read no Examples")
    for execution in graph.executions_with(examples[0].name, _INPUT):
        statistics = graph.artifacts_of(execution, _OUTPUT, STATISTICS)
        if statistics:
            return Lineage(version=int(directory.name), version_dir=directory,
                           model_id=_numeric_id(model.resource_name),
                           examples_uri=str(mounted(examples[0].uri, gcs_mount)),
                           statistics_uri=str(mounted(statistics[0].uri, gcs_mount)))
    raise LineageError(f"no StatisticsGen described the examples {examples[0].uri} that "
                       f"model {model_uri} was trained on")
