"""Monitoring a version a Vertex AI run pushed: its lineage from Vertex ML Metadata.

The metadata a Vertex AI run records is built from a real pipeline run's ML Metadata store, as
Vertex ML Metadata holds it (google.cloud.aiplatform_v1 Artifact/Execution/Event messages,
schema titles tfx.<type>, gs:// URIs); only the aiplatform calls are faked
(Artifact.get_with_uri and the metadata client's query_artifact_lineage_subgraph, which
answers the lineage within max_hops, as the service does). The artifacts are read through a
directory standing in for the Cloud Storage FUSE mount, and the monitoring command runs for real.
"""
from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any, Dict, List

import pytest

from monitoring import cli, lineage, predictions, vertex_lineage
from tests.test_monitoring import START, _eval_rows, _log

BUCKET = "vertex-bucket"
STORE = "projects/p/locations/europe-west4/metadataStores/default"


class FakeVertexMetadata:
    """The local run's store as Vertex ML Metadata; records the calls it answers."""

    def __init__(self, metadata_path: pathlib.Path, gs) -> None:
        from google.cloud.aiplatform_v1.types import Artifact, Event, Execution

        from reports import mlmd

        store = mlmd.open_store(metadata_path)
        types = {t.id: t.name for t in store.get_artifact_types()}
        self.artifacts = {f"{STORE}/artifacts/{a.id}": Artifact(
            name=f"{STORE}/artifacts/{a.id}", uri=gs(a.uri),
            schema_title=f"tfx.{types[a.type_id]}") for a in store.get_artifacts()}
        self.executions = {f"{STORE}/executions/{e.id}": Execution(
            name=f"{STORE}/executions/{e.id}") for e in store.get_executions()}
        kinds = {1: Event.Type.INPUT, 3: Event.Type.INPUT, 2: Event.Type.OUTPUT,
                 4: Event.Type.OUTPUT}  # MLMD's (DECLARED_)INPUT/OUTPUT
        self.events = [(f"{STORE}/artifacts/{e.artifact_id}",
                        f"{STORE}/executions/{e.execution_id}", kinds[e.type])
                       for e in store.get_events_by_execution_ids(
                           [e.id for e in store.get_executions()]) if e.type in kinds]
        self.calls: List[tuple] = []

    def subgraph(self, artifact: str, max_hops: int) -> Any:
        """Everything within max_hops artifact-execution edges of `artifact`."""
        from google.cloud.aiplatform_v1.types import Event, LineageSubgraph

        seen, frontier = {artifact}, {artifact}
        for _ in range(max_hops):
            reached = set()
            for a, e, _kind in self.events:
                if a in frontier:
                    reached.add(e)
                if e in frontier:
                    reached.add(a)
            frontier = reached - seen
            seen |= frontier
        return LineageSubgraph(
            artifacts=[self.artifacts[n] for n in seen if n in self.artifacts],
            executions=[self.executions[n] for n in seen if n in self.executions],
            events=[Event(artifact=a, execution=e, type_=kind) for a, e, kind in self.events
                    if a in seen and e in seen])

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from google.cloud import aiplatform

        fake = self

        class Client:
            def query_artifact_lineage_subgraph(self, artifact: str, max_hops: int) -> Any:
                fake.calls.append(("query_artifact_lineage_subgraph", artifact, max_hops))
                return fake.subgraph(artifact, max_hops)

        class Found:
            api_client = Client()

            def __init__(self, name: str) -> None:
                self.resource_name = name

        def get_with_uri(uri: str, **kwargs: Any) -> Found:
            fake.calls.append(("get_with_uri", uri, kwargs))
            named = [n for n, a in fake.artifacts.items() if a.uri == uri]
            if not named:  # what the SDK raises
                raise ValueError(f"No artifact with uri {uri} is in the `default` MetadataStore.")
            return Found(named[-1])

        monkeypatch.setattr(aiplatform.Artifact, "get_with_uri", staticmethod(get_with_uri))


@pytest.fixture()
def vertex_run(pipeline_runs, tmp_path, monkeypatch) -> Dict[str, Any]:
    """The served version as a Vertex AI push leaves it, its run in fake Vertex ML Metadata."""
    mount = tmp_path / "gcs"
    (mount / BUCKET).mkdir(parents=True)
    (mount / BUCKET / "root").symlink_to(pipeline_runs.pipeline_root.resolve())
    root = str(pipeline_runs.pipeline_root.resolve())

    def gs(uri: str) -> str:
        path = str(pathlib.Path(uri).resolve())
        return f"gs://{BUCKET}/root/{path[len(root) + 1:]}" if path.startswith(root) else uri

    served = pipeline_runs.base / "serving" / "babyweight"
    local = lineage.find(served, pipeline_runs.metadata_path)
    model_dir = tmp_path / "serving"
    shutil.copytree(local.version_dir, model_dir / str(local.version))
    record_path = model_dir / str(local.version) / lineage.PUSH_RECORD
    record = json.loads(record_path.read_text())
    # What the Vertex AI push records: the model's gs:// URI, no local store id.
    record = {k: v for k, v in record.items() if k != "model_id"}
    record["model_uri"] = gs(record["model_uri"])
    assert record["model_uri"].startswith("gs://")
    record_path.write_text(json.dumps(record))
    fake = FakeVertexMetadata(pipeline_runs.metadata_path, gs)
    fake.install(monkeypatch)
    return {"local": local, "model_dir": model_dir, "mount": mount, "fake": fake,
            "model_uri": record["model_uri"]}


def test_vertex_lineage_finds_the_statistics_the_local_store_finds(vertex_run):
    local, fake = vertex_run["local"], vertex_run["fake"]
    found = vertex_lineage.find(vertex_run["model_dir"], "p", "europe-west4",
                                gcs_mount=str(vertex_run["mount"]))
    assert found.version == local.version
    assert found.statistics_file("train").is_file()
    assert found.statistics_file("train").resolve() == local.statistics_file("train").resolve()
    assert found.examples_dir("eval").resolve() == local.examples_dir("eval").resolve()
    assert str(found.statistics_file("train")).startswith(str(vertex_run["mount"] / BUCKET))
    assert fake.calls[0] == ("get_with_uri", vertex_run["model_uri"],
                             {"project": "p", "location": "europe-west4"})
    assert fake.calls[1][0] == "query_artifact_lineage_subgraph"
    assert fake.calls[1][2] == vertex_lineage.LINEAGE_HOPS
    # The eval predictions are the same model's on the same examples, whichever store.
    assert (predictions.compute(found, max_examples=200)
            == predictions.compute(local, max_examples=200)).all()


def test_monitoring_runs_unchanged_on_the_vertex_lineage(vertex_run, tmp_path, capsys):
    found = vertex_lineage.find(vertex_run["model_dir"], "p", "europe-west4",
                                gcs_mount=str(vertex_run["mount"]))
    served = predictions.compute(found, max_examples=1500)
    logs = tmp_path / "request_log"
    _log(logs, _eval_rows(found, len(served)), served, found.version, START)
    reports = tmp_path / "reports"
    common = ["--logs", str(logs), "--model-dir", str(vertex_run["model_dir"]),
              "--reports-dir", str(reports), "--window", "1h", "--end", str(START + 1),
              "--gcs-mount", str(vertex_run["mount"])]
    code = cli.main(common + ["--vertex-project", "p", "--vertex-region", "europe-west4"])
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    assert f"version {found.version}" in printed.out
    (summary,) = reports.glob("monitoring/*/summary.json")
    assert json.loads(summary.read_text())["crossed"] == []
    page = next(reports.glob("monitoring/*/monitoring.html")).read_text()
    assert str(found.statistics_file("train")) in page

    # The Vertex push record read as a local one: refused, naming the way to read it.
    assert cli.main(common) == 1
    assert "--vertex-project" in capsys.readouterr().err


def test_a_model_vertex_metadata_does_not_hold_is_exit_1_in_words(vertex_run, capsys, tmp_path):
    record_path = next(vertex_run["model_dir"].glob(f"*/{lineage.PUSH_RECORD}"))
    record = json.loads(record_path.read_text())
    record["model_uri"] = f"gs://{BUCKET}/elsewhere/model"
    record_path.write_text(json.dumps(record))
    code = cli.main(["--logs", str(tmp_path), "--model-dir", str(vertex_run["model_dir"]),
                     "--vertex-project", "p", "--reports-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1
    assert "gs://vertex-bucket/elsewhere/model" in err and "Vertex ML Metadata" in err


def test_a_local_push_record_is_not_read_from_vertex(pipeline_runs):
    with pytest.raises(lineage.LineageError, match="not pushed by a Vertex AI run"):
        vertex_lineage.find(pipeline_runs.base / "serving" / "babyweight", "p", "r")
