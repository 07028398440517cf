"""The Vertex AI push: stock TF Serving at the training TensorFlow version, and a model card.

Offline: the compiled deployment spec is read from the pipeline JSON, and the push runs for
real on a real pipeline run's artifacts (model, evaluation, statistics, examples) laid out as
gs:// URIs behind a directory standing in for Vertex AI's /gcs/ mount; only the aiplatform
client calls (init, Endpoint.list/create, Model.upload, Model.deploy) are faked.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Dict, List

import pytest

import vertex_runner
from modules import features
from pipelines import cloud_config, pipeline, vertex_push, vertex_serving
from pipelines.cloud_config import CloudConfig
from reports.model_card import CARD_HTML, CARD_JSON, SCHEMA_VERSION
from tests.vertex_spec import CLOUD, container, parameter

# The compiled JSON is made once per test run, shared with test_vertex_runner.py.
pytest_plugins = ("tests.vertex_spec",)

BUCKET = "test-bucket"
MODEL_RESOURCE = "projects/p/locations/r/models/7"


def test_serving_image_matches_the_installed_tensorflow():
    """Fails when the lock moves TensorFlow and the serving image stays behind."""
    import tensorflow as tf

    installed = ".".join(tf.__version__.split(".")[:2])
    assert ".".join(cloud_config.TF_SERVING_VERSION.split(".")[:2]) == installed
    assert cloud_config.training_tf_version() == installed
    image = CloudConfig(project="p", bucket="b").serving_image_uri
    assert image == f"us-central1-docker.pkg.dev/p/babyweight/tf-serving:{cloud_config.TF_SERVING_VERSION}"
    assert cloud_config.image_tag_of(image) == cloud_config.TF_SERVING_VERSION  # pinned
    assert cloud_config.TF_SERVING_SOURCE == f"tensorflow/serving:{cloud_config.TF_SERVING_VERSION}"
    # The docs mirror exactly that image.
    docs = (pathlib.Path(__file__).parents[1] / "docs" / "cloud.md").read_text()
    assert f"docker pull {cloud_config.TF_SERVING_SOURCE}" in docs
    assert f"babyweight/tf-serving:{cloud_config.TF_SERVING_VERSION}" in docs


@pytest.mark.parametrize("image,words", [
    ("europe-docker.pkg.dev/p/babyweight/tf-serving:latest", ["latest", "digest"]),
    ("europe-docker.pkg.dev/p/babyweight/tf-serving", ["latest"]),
    ("europe-docker.pkg.dev/p/babyweight/tf-serving:2.15.0", ["2.15", "TensorFlow"]),
    ("us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest", ["latest"]),
])
def test_a_moving_or_mismatched_serving_image_is_refused(image, words, capsys, monkeypatch):
    from tests.test_vertex_runner import CLOUD_ENV, REQUIRED

    for variable in CLOUD_ENV + ("BABYWEIGHT_SERVING_IMAGE",):
        monkeypatch.delenv(variable, raising=False)
    assert vertex_runner.main(["compile", *REQUIRED, "--serving-image", image]) == 2
    message = capsys.readouterr().err
    assert f"--serving-image {image}" in message
    for word in words:
        assert word in message


def test_a_serving_image_by_digest_or_own_tag_is_taken():
    digest = "europe-docker.pkg.dev/p/r/tf-serving@sha256:" + "cd" * 32
    assert CloudConfig(project="p", bucket="b", serving_image=digest).serving_image_uri == digest
    tag = f"europe-docker.pkg.dev/p/r/tf-serving:{cloud_config.TF_SERVING_VERSION}-gpu"
    assert CloudConfig(project="p", bucket="b", serving_image=tag).serving_image_uri == tag


def test_compiled_push_stage_deploys_tf_serving_at_the_training_version(compiled):
    spec = compiled["spec"]
    deployment = json.loads(parameter(spec, pipeline.PUSHER_ID, "deployment"))
    assert deployment == {
        "project": "test-project", "region": "europe-west4", "endpoint_name": "babyweight-test",
        "image": f"europe-west4-docker.pkg.dev/test-project/babyweight/tf-serving:"
                 f"{cloud_config.TF_SERVING_VERSION}",
        "machine_type": "n1-standard-4", "min_replica_count": 1, "max_replica_count": 3}
    assert parameter(spec, pipeline.PUSHER_ID, "push_to") == "both"
    assert parameter(spec, pipeline.PUSHER_ID, "serving_dir") == (
        "gs://test-bucket/babyweight/serving")
    assert parameter(spec, pipeline.PUSHER_ID, "run_name") == vertex_runner.RUN_NAME_PLACEHOLDER
    # The card names the Trainer's own code fingerprint and configured hyperparameters.
    trainer = json.loads(parameter(spec, pipeline.PUSHER_ID, "trainer"))
    assert trainer["source_fingerprint"] == parameter(spec, "Trainer", "source_fingerprint")
    trainer_config = json.loads(parameter(spec, "Trainer", "custom_config"))
    assert json.loads(trainer["custom_config"])["hyperparameters"] == \
        trainer_config["hyperparameters"]
    # The push reads what a model card is written from (the compiled pipeline has the Tuner:
    # the card also names the hyperparameters it chose).
    inputs = spec["root"]["dag"]["tasks"][pipeline.PUSHER_ID]["inputs"]["artifacts"]
    producers = {k: (v["taskOutputArtifact"]["producerTask"],
                     v["taskOutputArtifact"]["outputArtifactKey"]) for k, v in inputs.items()}
    assert producers == {"model": ("Trainer", "model"), "model_blessing": ("Evaluator", "blessing"),
                         "evaluation": ("Evaluator", "evaluation"),
                         "statistics": ("StatisticsGen", "statistics"),
                         "examples": ("BigQueryExampleGen", "examples"),
                         "best_hyperparameters": ("Tuner", "best_hyperparameters")}
    assert container(spec, pipeline.PUSHER_ID)["image"] == CLOUD.image_uri
    assert "tf2-cpu" not in compiled["text"]


def test_upload_arguments_meet_vertex_custom_container_contract():
    arguments = vertex_serving.upload_arguments("img:2.16.1", "gs://b/x", "v7")
    assert arguments["serving_container_predict_route"] == "/v1/models/babyweight:predict"
    assert arguments["serving_container_health_route"] == "/v1/models/babyweight"
    assert arguments["serving_container_ports"] == [8501]
    assert arguments["serving_container_command"] == ["tensorflow_model_server"]
    assert "--model_base_path=$(AIP_STORAGE_URI)" in arguments["serving_container_args"]
    assert "--rest_api_port=8501" in arguments["serving_container_args"]
    assert "--model_name=babyweight" in arguments["serving_container_args"]
    import inspect

    from google.cloud import aiplatform

    accepted = set(inspect.signature(aiplatform.Model.upload).parameters)
    assert set(arguments) <= accepted, set(arguments) - accepted


class FakeAiplatform:
    """Records the aiplatform calls the push makes; the endpoint exists or not."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, endpoint_exists: bool) -> None:
        from google.cloud import aiplatform

        self.calls: List[tuple] = []
        fake = self

        class Endpoint:
            resource_name = "projects/p/locations/r/endpoints/42"

            @staticmethod
            def list(**kwargs: Any) -> list:
                fake.calls.append(("Endpoint.list", kwargs))
                return [Endpoint()] if endpoint_exists else []

            @staticmethod
            def create(**kwargs: Any) -> "Endpoint":
                fake.calls.append(("Endpoint.create", kwargs))
                return Endpoint()

        class Model:
            resource_name = MODEL_RESOURCE

            @staticmethod
            def upload(**kwargs: Any) -> "Model":
                fake.calls.append(("Model.upload", kwargs))
                # What Vertex AI copies to $(AIP_STORAGE_URI), as it is at upload time.
                fake.uploaded = sorted(
                    str(p.relative_to(vertex_serving.mounted(kwargs["artifact_uri"])))
                    for p in vertex_serving.mounted(kwargs["artifact_uri"]).rglob("*"))
                return Model()

            def deploy(self, **kwargs: Any) -> None:
                fake.calls.append(("Model.deploy", kwargs))

        monkeypatch.setattr(aiplatform, "init", lambda **kw: self.calls.append(("init", kw)))
        monkeypatch.setattr(aiplatform, "Endpoint", Endpoint)
        monkeypatch.setattr(aiplatform, "Model", Model)

    def named(self, name: str) -> List[Dict[str, Any]]:
        return [kwargs for call, kwargs in self.calls if call == name]


@pytest.fixture()
def run_artifacts(pipeline_runs, tmp_path, monkeypatch) -> Dict[str, Any]:
    """The pushing run's artifacts as gs://test-bucket/root/... behind a stand-in /gcs/ mount."""
    from reports import mlmd

    mount = tmp_path / "gcs"
    (mount / BUCKET).mkdir(parents=True)
    (mount / BUCKET / "root").symlink_to(pipeline_runs.pipeline_root.resolve())
    monkeypatch.setenv(vertex_serving.GCS_MOUNT_ENV, str(mount))
    root = str(pipeline_runs.pipeline_root.resolve())

    def gs(uri: str) -> str:
        return f"gs://{BUCKET}/root/" + str(pathlib.Path(uri).resolve())[len(root) + 1:]

    record = next(r for r in mlmd.list_runs(mlmd.open_store(pipeline_runs.metadata_path))
                  if r.output("ServingPusher", "pushed_model") is not None and
                  r.output("ServingPusher", "pushed_model").properties.get("pushed"))
    return {"record": record, "gs": gs, "mount": mount}


def push_inputs(run_artifacts: Dict[str, Any], blessed: bool = True) -> vertex_push.PushInputs:
    record, gs = run_artifacts["record"], run_artifacts["gs"]
    model = record.output("Trainer", "model")
    examples = record.input("StatisticsGen", "examples")
    statistics = record.output("StatisticsGen", "statistics")
    blessing = record.output("Evaluator", "blessing")
    return vertex_push.PushInputs(
        model_uri=gs(model.uri), serving_model_uri=gs(model.uri) + "/Format-Serving",
        blessing={**blessing.properties, "blessed": int(blessed)},
        evaluation_uri=gs(record.output("Evaluator", "evaluation").uri),
        statistics_uri=gs(statistics.uri), statistics_splits=statistics.properties["split_names"],
        examples_uri=gs(examples.uri), examples_properties=examples.properties)


def push_settings(run_artifacts: Dict[str, Any], push_to: str) -> vertex_push.PushSettings:
    cloud = CloudConfig(project="p", region="europe-west4", bucket=BUCKET, push_to=push_to)
    reports = run_artifacts["mount"] / BUCKET / "babyweight" / "reports" / "babyweight-1"
    trainer = run_artifacts["record"].component("Trainer").parameters
    return vertex_push.PushSettings(
        push_to=push_to, serving_dir=cloud.serving_dir,
        pushed_uri=f"gs://{BUCKET}/babyweight/pipeline_root/ServingPusher/pushed_model/9",
        deployment=cloud.deployment(), run_name="babyweight-1", pipeline_name="babyweight",
        trainer={"source_fingerprint": trainer["source_fingerprint"],
                 "custom_config": trainer["custom_config"]},
        report_path=str(reports / pipeline.PUSH_REPORT))


def test_vertex_push_deploys_tf_serving_with_the_model_card_in_the_version(
        run_artifacts, monkeypatch):
    import tensorflow as tf

    fake = FakeAiplatform(monkeypatch, endpoint_exists=False)
    settings = push_settings(run_artifacts, "both")
    decision = vertex_push.push(push_inputs(run_artifacts), settings)
    assert decision["pushed"] is True
    version = decision["version"]

    (upload,) = fake.named("Model.upload")
    assert upload == vertex_serving.upload_arguments(
        settings.deployment["image"], settings.pushed_uri, f"v{version}")
    assert upload["serving_container_image_uri"].endswith(
        f"tf-serving:{cloud_config.TF_SERVING_VERSION}")
    # TF Serving's --model_base_path needs <base>/<version>/saved_model.pb: the uploaded
    # directory holds this one version, whole, with its card, when Vertex AI copies it.
    assert f"{version}/saved_model.pb" in fake.uploaded
    assert f"{version}/{CARD_JSON}" in fake.uploaded
    assert {p.split("/")[0] for p in fake.uploaded} == {str(version)}
    (created,) = fake.named("Endpoint.create")
    assert created == {"display_name": settings.deployment["endpoint_name"]}
    (deploy,) = fake.named("Model.deploy")
    assert deploy["traffic_percentage"] == 100
    assert deploy["machine_type"] == settings.deployment["machine_type"]
    assert fake.named("init") == [{"project": "p", "location": "europe-west4"}]

    # Both targets hold the same complete version, with the push record and the card.
    directories = [vertex_serving.mounted(uri) for uri in decision["destinations"].values()]
    assert [d.parent for d in directories] == [
        vertex_serving.mounted(settings.pushed_uri), vertex_serving.mounted(settings.serving_dir)]
    metrics = {m["slice"] for m in json.loads((directories[0] / CARD_JSON).read_text())[
        "quantitative_analysis"]["performance_metrics"]}
    for directory in directories:
        card = json.loads((directory / CARD_JSON).read_text())
        assert card["schema_version"] == SCHEMA_VERSION
        assert card["model_details"]["version"]["name"] == str(version)
        assert card["model_details"]["path"] == decision["destination"]
        assert card["babyweight"]["run_id"] == "babyweight-1"
        assert card["babyweight"]["training_code_fingerprint"] == \
            settings.trainer["source_fingerprint"]
        assert card["babyweight"]["hyperparameters"]
        assert (directory / CARD_JSON).with_suffix(".html").is_file()
        record = json.loads((directory / vertex_push.PUSH_RECORD).read_text())
        assert record["version"] == version and record["vertex"]["model"] == MODEL_RESOURCE
        # The pushed version is the real model, whole.
        loaded = tf.saved_model.load(str(directory))
        assert "serving_default" in loaded.signatures
    assert "Overall" in metrics and any(s.startswith("plurality=") for s in metrics)
    reports = pathlib.Path(settings.report_path).parent
    assert (reports / CARD_HTML).is_file()
    assert json.loads(pathlib.Path(settings.report_path).read_text())["pushed"] is True


def test_a_model_already_in_the_serving_directory_is_neither_copied_nor_redeployed(
        run_artifacts, monkeypatch):
    """A scheduled run with nothing new reuses its cached Trainer: the same model again."""
    fake = FakeAiplatform(monkeypatch, endpoint_exists=True)
    settings = push_settings(run_artifacts, "both")
    first = vertex_push.push(push_inputs(run_artifacts), settings)
    assert first["pushed"] is True and fake.named("Model.upload")
    fake.calls.clear()
    again = vertex_push.push(push_inputs(run_artifacts), settings)
    assert again["pushed"] is False and again["version"] == first["version"]
    assert "already serves as version" in again["message"]
    assert again["model_digest"] == first["model_digest"]
    assert fake.calls == []
    serving = vertex_serving.mounted(settings.serving_dir)
    assert [p.name for p in serving.iterdir()] == [str(first["version"])]

    endpoint_only = push_settings(run_artifacts, "endpoint")  # no directory runs share
    assert vertex_push.push(push_inputs(run_artifacts), endpoint_only)["pushed"] is True
    assert fake.named("Model.upload")


def test_an_unblessed_model_is_neither_copied_nor_deployed(run_artifacts, monkeypatch):
    fake = FakeAiplatform(monkeypatch, endpoint_exists=True)
    settings = push_settings(run_artifacts, "both")
    decision = vertex_push.push(push_inputs(run_artifacts, blessed=False), settings)
    assert decision["pushed"] is False and "not blessed" in decision["message"]
    assert fake.calls == []
    assert not vertex_serving.mounted(settings.serving_dir).exists()
    assert json.loads(pathlib.Path(settings.report_path).read_text())["pushed"] is False


def test_a_card_that_cannot_be_written_stops_the_push_leaving_no_version(
        run_artifacts, monkeypatch):
    fake = FakeAiplatform(monkeypatch, endpoint_exists=True)
    settings = push_settings(run_artifacts, "endpoint")
    inputs = push_inputs(run_artifacts)
    from reports import model_card

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(model_card, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        vertex_push.push(inputs, settings)
    assert fake.named("Model.upload") == []
    pushed = vertex_serving.mounted(settings.pushed_uri)
    assert not pushed.exists() or list(pushed.iterdir()) == []


def test_the_component_runs_the_push_on_tfx_artifacts(run_artifacts, monkeypatch, tmp_path):
    """The TFX component itself (its executor, as Vertex AI's launcher calls it)."""
    from tfx.types import standard_artifacts

    from pipelines.components.vertex_pusher import VertexServingPusher

    fake = FakeAiplatform(monkeypatch, endpoint_exists=True)
    inputs = push_inputs(run_artifacts)
    settings = push_settings(run_artifacts, "endpoint")

    def artifact(kind: Any, uri: str, **properties: Any) -> Any:
        made = kind()
        made.uri = uri
        for key, value in properties.items():
            if key == "split_names":
                made.split_names = value
            elif isinstance(value, int):
                made.set_int_custom_property(key, value)
            elif isinstance(value, str):
                made.set_string_custom_property(key, value)
        return made

    pushed = artifact(standard_artifacts.PushedModel, settings.pushed_uri)
    executor = VertexServingPusher.EXECUTOR_SPEC.executor_class()
    executor.Do(
        {"model": [artifact(standard_artifacts.Model, inputs.model_uri)],
         "model_blessing": [artifact(standard_artifacts.ModelBlessing, "gs://b/blessing",
                                     blessed=1)],
         "evaluation": [artifact(standard_artifacts.ModelEvaluation, inputs.evaluation_uri)],
         "statistics": [artifact(standard_artifacts.ExampleStatistics, inputs.statistics_uri,
                                 split_names=inputs.statistics_splits)],
         "examples": [artifact(standard_artifacts.Examples, inputs.examples_uri,
                               split_names=inputs.examples_properties["split_names"])]},
        {"pushed_model": [pushed]},
        {"push_to": "endpoint", "serving_dir": settings.serving_dir,
         "deployment": json.dumps(dict(settings.deployment)), "run_name": "babyweight-1",
         "pipeline_name": "babyweight", "trainer": json.dumps(dict(settings.trainer)),
         "report_path": settings.report_path})
    assert pushed.get_int_custom_property("pushed") == 1
    version = pushed.get_int_custom_property("pushed_version")
    assert pushed.get_string_custom_property("pushed_destination") == \
        f"{settings.pushed_uri}/{version}"
    assert len(fake.named("Model.upload")) == 1 and fake.named("Endpoint.create") == []
    card = json.loads((vertex_serving.mounted(settings.pushed_uri) / str(version) / CARD_JSON)
                      .read_text())
    assert card["model_parameters"]["input_format"].startswith(features.FEATURES[0].name)


def test_the_image_holds_the_code_the_push_runs():
    """The push writes the card with reports/ in the pipeline's image: the Dockerfile copies it."""
    from pipelines import fingerprints
    from pipelines.config import PROJECT_ROOT

    files = {p.relative_to(PROJECT_ROOT).as_posix() for p in fingerprints.image_files()}
    assert {"reports/model_card.py", "reports/facts.py", "reports/templates/model_card.html.j2",
            "common/gcs.py", "pipelines/vertex_push.py",
            "pipelines/components/vertex_pusher.py"} <= files


def test_versions_increase_past_the_serving_directory_s_newest(tmp_path, monkeypatch):
    monkeypatch.setenv(vertex_serving.GCS_MOUNT_ENV, str(tmp_path))
    settings = vertex_push.PushSettings(
        push_to="gcs", serving_dir="gs://b/babyweight/serving", pushed_uri="gs://b/p",
        deployment={}, run_name="r", pipeline_name="babyweight", trainer={}, report_path="x")
    import time

    ahead = int(time.time()) + 10_000  # a version from a clock ahead of this one
    (tmp_path / "b" / "babyweight" / "serving" / str(ahead)).mkdir(parents=True)
    (tmp_path / "b" / "babyweight" / "serving" / "tmp").mkdir()
    assert vertex_push._next_version(settings) == ahead + 1
