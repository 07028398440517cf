"""The Vertex AI runner, offline: compile with no network or credentials, submit to a fake client.

The compiled JSON (made once per test run: tests/vertex_spec.py) is checked where Vertex AI
reads it: each task's parameters (pipelineSpec.root.dag.tasks.<id>.inputs.parameters) and each
executor's container (pipelineSpec.deploymentSpec.executors.<id>_executor.container: image,
args incl. Beam's).
"""
import json
import pathlib
import re
import subprocess
import sys
from typing import Any, List

import pytest

import vertex_runner
from modules.hparams import HyperParameters
from pipelines import fingerprints, pipeline
from pipelines.cloud_config import IMAGE_PROJECT_DIR, CloudConfig, cloud_from_flags
from pipelines.components.duckdb_example_gen.component import DuckDBExampleGen
from pipelines.config import (PROJECT_ROOT, DataConfig, EvaluationConfig, TrainingConfig,
                              WarehouseConfig)
from tests.vertex_spec import CLOUD, build_vertex, container, parameter
from warehouse import sql

# The compiled JSON is made once per test run (tests/vertex_spec.py), shared with
# test_vertex_serving.py.
pytest_plugins = ("tests.vertex_spec",)

REQUIRED = ["--project", "test-project", "--bucket", "test-bucket"]
CLOUD_ENV = ("BABYWEIGHT_PROJECT", "GOOGLE_CLOUD_PROJECT", "BABYWEIGHT_BUCKET",
             "BABYWEIGHT_REGION", "GOOGLE_CLOUD_REGION", "BABYWEIGHT_SERVICE_ACCOUNT",
             "BABYWEIGHT_IMAGE")


def build_local(tmp_path: pathlib.Path, **training: Any):
    """As local_runner.run builds it."""
    warehouse = WarehouseConfig(database=tmp_path / "natality.duckdb")
    return pipeline.create_pipeline(
        pipeline_name="babyweight", pipeline_root=str(tmp_path / "root"),
        example_gen=DuckDBExampleGen(input_config=pipeline.input_config(DataConfig()),
                                     database=warehouse.database),
        data_config=DataConfig(), reports_dir=tmp_path / "reports", warehouse=warehouse,
        serving_dir=str(tmp_path / "serving"), hyperparameters=HyperParameters(),
        training=TrainingConfig(**training), evaluation=EvaluationConfig(),
        beam_pipeline_args=[], enable_cache=True)


def test_compiled_json_holds_every_component(compiled):
    tasks = set(compiled["spec"]["root"]["dag"]["tasks"])
    for component_id in compiled["ids"]:
        # The baseline resolver compiles to two resolver tasks named after it.
        assert component_id in tasks or any(t.startswith(component_id + "-") for t in tasks)
    assert {"BigQueryExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
            "AnomalyGate", "Transform", "Tuner", "Trainer", "Evaluator", pipeline.PUSHER_ID} <= tasks
    for task in tasks - {t for t in tasks if t.startswith("latest_blessed_model_resolver")}:
        assert container(compiled["spec"], task)["image"] == CLOUD.image_uri
    # ImportSchemaGen runs in the image: it reads the image's copy of the curated schema.
    assert parameter(compiled["spec"], "ImportSchemaGen", "schema_file") == (
        f"{IMAGE_PROJECT_DIR}/schema/schema.pbtxt")
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert f"WORKDIR {IMAGE_PROJECT_DIR}\n" in dockerfile and "COPY schema/ schema/" in dockerfile


def test_bigquery_example_gen_runs_the_same_split_queries(compiled):
    splits = json.loads(parameter(compiled["spec"], "BigQueryExampleGen", "input_config"))
    data = DataConfig()
    expected = sql.split_queries(sql.base_query(), data.split_buckets(), data.hash_buckets,
                                 data.sample_per_mille)
    assert {s["name"]: s["pattern"] for s in splits["splits"]} == expected
    query_file = sql.QUERY_FILE.read_text()
    for split in splits["splits"]:
        assert query_file.strip().rstrip(";") in split["pattern"]
        assert "`bigquery-public-data.samples.natality`" in split["pattern"]


def test_beam_components_run_on_dataflow_in_the_pipeline_image(compiled):
    expected = {"--runner=DataflowRunner", "--project=test-project", "--region=europe-west4",
                "--temp_location=gs://test-bucket/babyweight/dataflow/tmp",
                "--staging_location=gs://test-bucket/babyweight/dataflow/staging",
                f"--sdk_container_image={CLOUD.image_uri}", "--experiments=use_runner_v2",
                f"--service_account_email={CLOUD.service_account}"}
    for task in ("BigQueryExampleGen", "StatisticsGen", "Transform", "Evaluator"):
        args: List[str] = container(compiled["spec"], task)["args"]
        assert expected <= set(args), (task, sorted(expected - set(args)))
    assert parameter(compiled["spec"], "Transform", "preprocessing_fn") == pipeline.PREPROCESSING_FN


def test_trainer_and_tuner_run_on_vertex_training(compiled):
    for task, args_key in (("Trainer", "ai_platform_training_args"),
                           ("Tuner", "ai_platform_tuning_args")):
        custom = json.loads(parameter(compiled["spec"], task, "custom_config"))
        assert custom["ai_platform_enable_vertex"] is True
        assert custom["ai_platform_vertex_region"] == "europe-west4"
        job = custom[args_key]
        assert job["project"] == "test-project"
        assert job["job_spec"]["service_account"] == CLOUD.service_account
        (pool,) = job["job_spec"]["worker_pool_specs"]
        assert pool["machine_spec"] == {"machine_type": "n1-highmem-8",
                                        "accelerator_type": "NVIDIA_TESLA_T4",
                                        "accelerator_count": 1}
        assert pool["container_spec"]["image_uri"] == CLOUD.image_uri
        # The module code's own settings ride along unchanged.
        assert custom["hyperparameters"] == HyperParameters().to_dict()
    assert parameter(compiled["spec"], "Trainer", "run_fn") == pipeline.RUN_FN
    assert parameter(compiled["spec"], "Tuner", "tuner_fn") == pipeline.TUNER_FN


def test_pusher_targets_the_endpoint_and_the_gcs_serving_dir(compiled):
    deployment = json.loads(parameter(compiled["spec"], pipeline.PUSHER_ID, "deployment"))
    assert deployment == {
        "project": "test-project", "region": "europe-west4", "endpoint_name": "babyweight-test",
        "image": CLOUD.serving_image_uri, "machine_type": "n1-standard-4",
        "min_replica_count": 1, "max_replica_count": 3}
    assert parameter(compiled["spec"], pipeline.PUSHER_ID, "push_to") == "both"
    assert parameter(compiled["spec"], pipeline.PUSHER_ID, "serving_dir") == (
        "gs://test-bucket/babyweight/serving")
    assert parameter(compiled["spec"], pipeline.PUSHER_ID, "report_path") == (
        f"{CLOUD.reports_dir}/{vertex_runner.RUN_NAME_PLACEHOLDER}/{pipeline.PUSH_REPORT}")
    assert "VertexServingPusher" in container(compiled["spec"], pipeline.PUSHER_ID)["args"][1]


@pytest.mark.parametrize("tune", [False, True])
def test_local_and_vertex_pipelines_have_the_same_stages(tmp_path, tune):
    local = build_local(tmp_path, tune=tune).components
    cloud = build_vertex(CloudConfig(project="p", bucket="b"), tune=tune).components
    # The only local-only extra: the EDA report reads the embedded DuckDB warehouse.
    local = [c for c in local if c.id != "EdaReport"]
    assert len(local) == len(cloud)
    for here, there in zip(local, cloud):
        if here.id == "DuckDBExampleGen":
            assert there.id == "BigQueryExampleGen"
        elif here.id == pipeline.PUSHER_ID:
            # ServingPusher (TF Serving directory) here, VertexServingPusher there.
            assert there.id == pipeline.PUSHER_ID
            assert set(there.outputs) == set(here.outputs) == {"pushed_model"}
        else:
            assert there.id == here.id
            # Same class, TFX's Vertex AI subclass of it (Trainer, Tuner), or locally the
            # subclass built with the batched-reads executor (StatisticsGen, Transform,
            # Evaluator): one stage either way.
            assert isinstance(there, type(here)) or isinstance(here, type(there)), (
                there.id, type(there), type(here))
            assert set(there.inputs) == set(here.inputs), there.id


def test_submit_sends_the_compiled_template_to_vertex(tmp_path, monkeypatch):
    calls: List[Any] = []

    class FakePipelineJob:
        def __init__(self, **kwargs: Any) -> None:
            calls.append(("init", kwargs))

        def submit(self, **kwargs: Any) -> None:
            calls.append(("submit", kwargs))

        def create_schedule(self, **kwargs: Any) -> Any:
            calls.append(("create_schedule", kwargs))
            return None

    monkeypatch.setattr("google.cloud.aiplatform.PipelineJob", FakePipelineJob)
    for variable in CLOUD_ENV:
        monkeypatch.delenv(variable, raising=False)
    output = tmp_path / "babyweight.json"
    common = [*REQUIRED, "--region", "asia-east1", "--output", str(output),
              "--service-account", "sa@test-project.iam.gserviceaccount.com"]
    assert vertex_runner.main(["submit", *common]) == 0
    (_, init), (_, submit) = calls
    assert init["template_path"] == str(output) and "pipelineSpec" in json.loads(output.read_text())
    assert init["project"] == "test-project" and init["location"] == "asia-east1"
    assert init["pipeline_root"] == "gs://test-bucket/babyweight/pipeline_root"
    assert init["enable_caching"] is True and init["display_name"].startswith("babyweight-")
    assert submit == {"service_account": "sa@test-project.iam.gserviceaccount.com"}

    calls.clear()
    assert vertex_runner.main(["submit", *common, "--schedule", "0 6 * * 1"]) == 0
    assert [name for name, _ in calls] == ["init", "create_schedule"]
    assert calls[1][1]["cron"] == "0 6 * * 1"
    assert calls[1][1]["service_account"] == "sa@test-project.iam.gserviceaccount.com"


def test_missing_required_setting_fails_fast_naming_it(monkeypatch, capsys):
    for variable in CLOUD_ENV:
        monkeypatch.delenv(variable, raising=False)
    assert vertex_runner.main(["compile", "--bucket", "b"]) == 2
    message = capsys.readouterr().err
    assert "--project" in message and "BABYWEIGHT_PROJECT" in message
    assert "GOOGLE_CLOUD_PROJECT" in message

    # The real process: exit code 2, before anything heavy is imported.
    env = {"PATH": "/usr/bin:/bin", "GOOGLE_CLOUD_PROJECT": "from-env",
           "TF_USE_LEGACY_KERAS": "1"}
    result = subprocess.run([sys.executable, "vertex_runner.py", "compile"], cwd=PROJECT_ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "--bucket" in result.stderr and "BABYWEIGHT_BUCKET" in result.stderr


def test_flags_win_over_environment_which_wins_over_defaults():
    args = vertex_runner.parse_args(["compile", "--bucket", "flag-bucket"])
    cloud = cloud_from_flags(args, {"GOOGLE_CLOUD_PROJECT": "env-project",
                                    "BABYWEIGHT_BUCKET": "env-bucket",
                                    "BABYWEIGHT_DATAFLOW_MAX_WORKERS": "3"})
    assert (cloud.project, cloud.bucket, cloud.dataflow_max_workers) == (
        "env-project", "flag-bucket", 3)
    assert cloud.region == "us-central1"
    assert cloud.service_account_email == "babyweight-pipelines@env-project.iam.gserviceaccount.com"
    assert cloud.image_uri == (
        f"us-central1-docker.pkg.dev/env-project/babyweight/babyweight:{fingerprints.image_tag()}")
    with pytest.raises(ValueError, match="accelerator"):
        CloudConfig(project="p", bucket="b", training_accelerator_type="NVIDIA_TESLA_T4")


def test_examples_are_not_cached_in_memory_on_vertex_unless_asked():
    """The full table does not fit in a training machine's memory; locally the cache is on."""
    from pipelines import config

    assert config.TrainingConfig().cache_examples is True
    for argv, expected in ((["compile"], False), (["compile", "--cache-examples"], True)):
        args = vertex_runner.parse_args(argv)
        assert config.from_flags(config.TrainingConfig, args).cache_examples is expected


def test_bigquery_billing_project_applies_to_example_gen_only():
    definition = build_vertex(CloudConfig(project="p", bucket="b", bigquery_project="billing"))
    by_id = {c.id: c for c in definition.components}
    example_gen, statistics_gen = by_id["BigQueryExampleGen"], by_id["StatisticsGen"]
    assert example_gen.executor_spec.beam_pipeline_args[-1] == "--project=billing"
    assert "--project=billing" not in statistics_gen.executor_spec.beam_pipeline_args


def test_dataflow_reads_with_beam_s_own_tfrecord_reader():
    """Batched reads are local only: on Dataflow, Beam's reader splits big files across workers."""
    from tfx.components.evaluator.executor import Executor as StockEvaluator
    from tfx.components.statistics_gen.executor import Executor as StockStatisticsGen
    from tfx.components.transform.executor import Executor as StockTransform

    by_id = {c.id: c for c in build_vertex(CLOUD).components}
    assert by_id["StatisticsGen"].executor_spec.executor_class is StockStatisticsGen
    assert by_id["Transform"].executor_spec.executor_class is StockTransform
    assert by_id["Evaluator"].executor_spec.executor_class is StockEvaluator


def test_example_gen_resolves_its_spans_before_vertex_checks_the_cache(compiled):
    from pipelines.components import vertex_span_driver

    example_gen = container(compiled["spec"], vertex_runner.EXAMPLE_GEN_ID)
    hook = example_gen["lifecycle"]["preCacheCheck"]
    assert hook["command"] == ["python", "-m", vertex_span_driver.HOOK_MODULE]
    args = hook["args"]
    assert args[:2] == [vertex_span_driver.INVOCATION_FLAG, "{{$}}"]
    settings = args[args.index(vertex_span_driver.SETTINGS_FLAG) + 1]
    assert json.loads(settings) == DataConfig().split_layout()
    assert args[-1] == "--project=test-project"  # the query's billing project
    range_config = json.loads(parameter(compiled["spec"], vertex_runner.EXAMPLE_GEN_ID,
                                        "range_config"))
    assert range_config == {"rolling_range": {}}  # every span, the newest found at run time


def test_each_run_writes_its_reports_under_its_own_name(compiled):
    report = parameter(compiled["spec"], "AnomalyGate", "report_path")
    assert report == (f"{CLOUD.reports_dir}/{vertex_runner.RUN_NAME_PLACEHOLDER}/"
                      f"{pipeline.ANOMALIES_REPORT}")


def test_default_image_is_tagged_with_the_code_fingerprint_never_latest(compiled):
    """Vertex AI reuses a cached task by its image's name: the name must change with the code."""
    assert CLOUD.image is None  # the compiled pipeline names the default image
    spec = compiled["spec"]
    image = (f"europe-west4-docker.pkg.dev/test-project/babyweight/babyweight:"
             f"{fingerprints.image_tag()}")
    images = {executor["container"]["image"]
              for executor in spec["deploymentSpec"]["executors"].values()
              if "container" in executor}
    assert images == {image}
    assert f"--sdk_container_image={image}" in container(spec, "StatisticsGen")["args"]
    custom = json.loads(parameter(spec, "Trainer", "custom_config"))
    (pool,) = custom["ai_platform_training_args"]["job_spec"]["worker_pool_specs"]
    assert pool["container_spec"]["image_uri"] == image
    # Wherever the JSON names the project's image, it names this code's tag.
    named = set(re.findall(r"babyweight/babyweight[:@][\w.:-]+", compiled["text"]))
    assert named == {f"babyweight/babyweight:{fingerprints.image_tag()}"}
    # Each task's parameters (its cache key on Vertex AI too) carry its code's fingerprint.
    for task in ("BigQueryExampleGen", "ImportSchemaGen", "Transform", "Trainer", "Evaluator"):
        assert len(parameter(spec, task, fingerprints.FINGERPRINT_PROPERTY)) == 16, task


@pytest.mark.parametrize("image", ["europe-docker.pkg.dev/p/babyweight/babyweight:latest",
                                   "localhost:5000/babyweight"])
def test_an_image_named_latest_is_refused(image, monkeypatch, capsys):
    for variable in CLOUD_ENV:
        monkeypatch.delenv(variable, raising=False)
    assert vertex_runner.main(["compile", *REQUIRED, "--image", image]) == 2
    message = capsys.readouterr().err
    assert f"--image {image}" in message and "latest" in message and "digest" in message


def test_an_image_named_by_digest_or_its_own_tag_is_taken(caplog):
    digest = "europe-docker.pkg.dev/p/babyweight/babyweight@sha256:" + "ab" * 32
    assert CloudConfig(project="p", bucket="b", image=digest).image_uri == digest
    tagged = CloudConfig(project="p", bucket="b", image="localhost:5000/babyweight:v7")
    with caplog.at_level("WARNING", logger=vertex_runner.log.name):
        vertex_runner.warn_if_image_is_other_code(tagged)
    assert fingerprints.image_tag() in caplog.text and "v7" in caplog.text


def test_image_tag_command_prints_the_tag_the_docs_build_with(capsys):
    assert vertex_runner.main(["image-tag"]) == 0
    assert capsys.readouterr().out.strip() == fingerprints.image_tag()
    build = "babyweight:$(.venv/bin/python vertex_runner.py image-tag)"
    assert build in (PROJECT_ROOT / "docs" / "cloud.md").read_text()


def test_help_shows_each_cloud_switch_s_real_default(capsys):
    """Cloud flags parse as None when not given (the environment may set them); their help
    must still say what an unset flag means, a --flag/--no-flag one too."""
    import vertex_runner
    from pipelines.cloud_config import CloudConfig

    with pytest.raises(SystemExit):
        vertex_runner.main(["compile", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in shown
    assert CloudConfig().enable_cache is True
    assert "[env: BABYWEIGHT_ENABLE_CACHE] (default: on)" in shown
