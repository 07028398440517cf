"""The Vertex AI pipeline JSON, compiled once per test run for the tests that only read it.

Compiling builds the whole pipeline (every component's code fingerprint) and runs TFX's
Kubeflow V2 compiler: the slowest step of the Vertex tests, the same for each reader. It is made
once in all (tests/made_once.py: also across xdist workers). Test modules load this file with
`pytest_plugins = ("tests.vertex_spec",)` (importing the fixture by name would define it once
per module, compiling again).

The settings are the ones a team would give: every optional one set, except the image, so the
default image name (tagged with the code's fingerprint) is the one the JSON must carry.
"""
from __future__ import annotations

import json
import pathlib
import socket
from typing import Any, Dict

import pytest

from pipelines.cloud_config import CloudConfig
from tests.made_once import made_once

CLOUD = CloudConfig(
    project="test-project", region="europe-west4", bucket="gs://test-bucket/",
    service_account="runner@test-project.iam.gserviceaccount.com",
    training_machine_type="n1-highmem-8", training_accelerator_type="NVIDIA_TESLA_T4",
    training_accelerator_count=1, push_to="both", endpoint_name="babyweight-test",
    serving_machine_type="n1-standard-4", serving_max_replicas=3)


def build_vertex(cloud: CloudConfig = CLOUD, **training: Any):
    """The pipeline as vertex_runner builds it, with `cloud`'s settings."""
    import vertex_runner
    from modules.hparams import HyperParameters
    from pipelines.config import DataConfig, EvaluationConfig, TrainingConfig

    return vertex_runner.build_pipeline(cloud, DataConfig(), TrainingConfig(**training),
                                        HyperParameters(), EvaluationConfig())


def parameter(spec: Dict[str, Any], task: str, name: str) -> str:
    value = spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"][name]
    return value["runtimeValue"]["constantValue"]["stringValue"]


def container(spec: Dict[str, Any], task: str) -> Dict[str, Any]:
    return spec["deploymentSpec"]["executors"][f"{task}_executor"]["container"]


def _compile(directory: pathlib.Path) -> Dict[str, Any]:
    """Compiles CLOUD's pipeline, with the Tuner, sockets refused and no credentials in sight."""
    import vertex_runner
    from pipelines.config import DataConfig

    output = directory / "pipeline.json"

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("network access during compile")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        patch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(directory / "no-such-key.json"))
        patch.setenv("CLOUDSDK_CONFIG", str(directory / "no-gcloud"))
        definition = build_vertex(tune=True)
        vertex_runner.compile_pipeline(definition, CLOUD, output, DataConfig())
    return {"ids": [c.id for c in definition.components], "path": str(output)}


@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """CLOUD's compiled pipeline: the component ids, the JSON's text and its pipelineSpec."""
    made = made_once("vertex_spec", tmp_path_factory, _compile)
    text = pathlib.Path(made["path"]).read_text()
    return {"ids": made["ids"], "text": text, "spec": json.loads(text)["pipelineSpec"]}
