#!/usr/bin/env python
"""Runs the babyweight pipeline on Google Cloud: Vertex AI Pipelines, BigQuery and Dataflow.

The pipeline is the one in pipelines/pipeline.py, built from the same .sql file and module code
as the local run; only the engines differ:
  ExampleGen          BigQueryExampleGen running warehouse.sql.split_queries(...) on
                      bigquery-public-data.samples.natality, restricted at run time to the
                      run's spans by the span driver (a pre-cache-check hook on Vertex AI)
  Beam components     Dataflow (Runner v2), workers running the pipeline's image
  Trainer, Tuner      Vertex AI Training custom jobs running the pipeline's image
  push                VertexServingPusher: a version directory with its model card, deployed to a
                      Vertex AI endpoint (created if missing) running stock TF Serving at the
                      training TensorFlow version, and/or into gs://<bucket>/babyweight/serving

Commands:
  compile   write the Vertex AI pipeline JSON (offline: no network, no credentials)
  submit    compile, then start a run (or --schedule "cron" a recurring one) on Vertex AI
  image-tag print the tag of this code's image: a fingerprint of every file the image is built
            from, and the tag compile and submit name by default (build the image with it)

Every cloud setting is a flag with an environment fallback (shown in --help); only the project
and the bucket are required. Exit codes: 0 success, 2 a setting is missing or invalid, 1 any
other failure. Step-by-step setup (APIs, service account, image): docs/cloud.md.
"""
from __future__ import annotations

import argparse  # noqa: E402
import datetime  # noqa: E402
import logging  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

from common import logs  # noqa: E402
from modules.hparams import HyperParameters  # noqa: E402
from pipelines import config, fingerprints  # noqa: E402
from pipelines.cloud_config import (  # noqa: E402
    IMAGE_PROJECT_DIR, CloudConfig, MissingSetting, add_cloud_flags, cloud_from_flags,
    image_tag_of)

log = logging.getLogger("babyweight.vertex_runner")

DEFAULT_OUTPUT = config.PROJECT_ROOT / "runs" / "vertex" / f"{config.PIPELINE_NAME}_pipeline.json"
EXAMPLE_GEN_ID = "BigQueryExampleGen"
# Vertex AI replaces this with the run's name when the run starts, so each run of a schedule
# writes its reports to its own directory (a stamp taken at compile time would be shared).
RUN_NAME_PLACEHOLDER = "{{$.pipeline_job_name}}"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    add_cloud_flags(common)
    config.add_flags(common, config.DataConfig)
    config.add_flags(common, config.TrainingConfig)
    # The full table's transformed examples do not fit in a training machine's memory.
    common.set_defaults(cache_examples=False)
    config.add_flags(common, HyperParameters)
    config.add_flags(common, config.EvaluationConfig)
    common.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT,
                        help=f"Where the compiled pipeline JSON goes (default: {DEFAULT_OUTPUT}).")
    common.add_argument("--verbose", action="store_true", help="Show TFX's own logs.")

    parser = argparse.ArgumentParser(
        prog="vertex_runner.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True,
                                     metavar="{compile,submit,image-tag}")
    commands.add_parser("image-tag", help="print the tag of this code's image",
                        description="Prints the fingerprint of the files the Dockerfile copies "
                        "into the image: the image tag compile and submit name by default.")
    commands.add_parser("compile", parents=[common], help="write the Vertex AI pipeline JSON",
                        description="Compiles the pipeline for Vertex AI Pipelines (offline).")
    submit = commands.add_parser(
        "submit", parents=[common], help="compile, then run on Vertex AI Pipelines",
        description="Compiles the pipeline and submits a run to Vertex AI Pipelines.")
    submit.add_argument(
        "--schedule", metavar="CRON", default=None,
        help='Create a recurring schedule instead of one run, e.g. "0 6 * * 1" (Mondays 06:00 '
             'UTC) or "TZ=Europe/Paris 0 6 * * 1".')
    return parser.parse_args(argv)


def engines(cloud: CloudConfig, reports_dir: pathlib.Path) -> Any:
    """Vertex AI Training for the Trainer/Tuner; the push stage to the chosen targets."""
    import json

    from tfx.extensions.google_cloud_ai_platform import constants
    from tfx.extensions.google_cloud_ai_platform.trainer.component import Trainer
    from tfx.extensions.google_cloud_ai_platform.trainer.executor import TRAINING_ARGS_KEY
    from tfx.extensions.google_cloud_ai_platform.tuner.component import Tuner
    from tfx.extensions.google_cloud_ai_platform.tuner.executor import TUNING_ARGS_KEY
    from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
        LatestBlessedModelStrategy)

    from pipelines import pipeline
    from pipelines.components.vertex_pusher import VertexServingPusher

    vertex = {constants.ENABLE_VERTEX_KEY: True, constants.VERTEX_REGION_KEY: cloud.region}

    def pushers(channels: "pipeline.PushChannels") -> List[Any]:
        # One node for both targets: a pushed version is one directory, with one model card.
        return [VertexServingPusher(
            model=channels.model, model_blessing=channels.blessing,
            evaluation=channels.evaluation, statistics=channels.statistics,
            examples=channels.examples, best_hyperparameters=channels.best_hyperparameters,
            push_to=cloud.push_to, serving_dir=cloud.serving_dir,
            deployment=json.dumps(cloud.deployment(), sort_keys=True),
            run_name=RUN_NAME_PLACEHOLDER, pipeline_name=config.PIPELINE_NAME,
            trainer="{}", report_path=str(reports_dir / pipeline.PUSH_REPORT),
        ).with_id(pipeline.PUSHER_ID)]

    return pipeline.Engines(
        trainer=Trainer, tuner=Tuner,
        trainer_custom_config={**vertex, TRAINING_ARGS_KEY: cloud.training_job_args()},
        tuner_custom_config={**vertex, TUNING_ARGS_KEY: cloud.training_job_args()},
        pushers=pushers,
        # Beam's own TFRecord reader splits big files across Dataflow workers.
        batched_reads=False,
        # The only resolver strategy Vertex AI pipelines compile, besides the latest artifact.
        baseline_strategy=LatestBlessedModelStrategy)


def tell_pusher_the_trainer(definition: Any) -> None:
    """The model card names the training code's fingerprint and the hyperparameters the
    Trainer was configured with: copied onto the pusher once the fingerprints are stamped."""
    import json

    from pipelines import fingerprints as fingerprints_lib
    from pipelines import pipeline
    from pipelines.components.vertex_pusher import TRAINER_PARAMETER

    by_id = {c.id: c for c in definition.components}
    trainer = by_id["Trainer"].exec_properties
    custom = json.loads(trainer.get("custom_config") or "{}") if isinstance(
        trainer.get("custom_config"), str) else dict(trainer.get("custom_config") or {})
    by_id[pipeline.PUSHER_ID].exec_properties[TRAINER_PARAMETER] = json.dumps({
        fingerprints_lib.FINGERPRINT_PROPERTY: trainer[fingerprints_lib.FINGERPRINT_PROPERTY],
        "custom_config": json.dumps(
            {key: custom[key] for key in ("hyperparameters",) if key in custom}),
    }, sort_keys=True)


def build_pipeline(cloud: CloudConfig, data: config.DataConfig,
                   training: config.TrainingConfig, hyperparameters: HyperParameters,
                   evaluation: config.EvaluationConfig) -> Any:
    """The one pipeline definition, with BigQuery, Dataflow and Vertex AI as its engines."""
    from pipelines import pipeline
    from pipelines.components.bigquery_example_gen import SpannedBigQueryExampleGen

    reports_dir = pathlib.Path(cloud.reports_dir) / RUN_NAME_PLACEHOLDER
    example_gen = SpannedBigQueryExampleGen(
        input_config=pipeline.input_config(data),
        range_config=pipeline.range_config(data)).with_id(EXAMPLE_GEN_ID)
    if cloud.billing_project != cloud.project:
        # Later args win: the query (and this component's Dataflow job) bill the other project.
        example_gen.with_beam_pipeline_args([f"--project={cloud.billing_project}"])
    definition = pipeline.create_pipeline(
        pipeline_name=config.PIPELINE_NAME,
        pipeline_root=cloud.pipeline_root,
        example_gen=example_gen,
        data_config=data,
        reports_dir=reports_dir,
        warehouse=None,  # the EDA report reads the embedded DuckDB warehouse: local only
        serving_dir=cloud.serving_dir,
        hyperparameters=hyperparameters,
        training=training,
        evaluation=evaluation,
        beam_pipeline_args=cloud.beam_pipeline_args(),
        enable_cache=cloud.enable_cache,
        engines=engines(cloud, reports_dir),
        # ImportSchemaGen reads the schema inside the container: the image's copy of the file.
        project_dir=IMAGE_PROJECT_DIR,
    )
    tell_pusher_the_trainer(definition)
    return definition


def compile_pipeline(definition: Any, cloud: CloudConfig, output: pathlib.Path,
                     data: config.DataConfig) -> pathlib.Path:
    """Writes the Vertex AI pipeline JSON; every component runs in the pipeline's image.

    The ExampleGen gets the span driver as its pre-cache-check hook (TFX's compiler gives one
    to file-based ExampleGens only), with the split layout of `data`, the pipeline's own.
    """
    import json

    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kubeflow_v2

    from pipelines import pipeline
    from pipelines.components.vertex_span_driver import add_pre_cache_check

    output = pathlib.Path(output).resolve()
    runner = kubeflow_v2.KubeflowV2DagRunner(
        config=kubeflow_v2.KubeflowV2DagRunnerConfig(default_image=cloud.image_uri),
        output_dir=str(output.parent), output_filename=output.name)
    runner.run(definition)
    compiled = json.loads(output.read_text())
    add_pre_cache_check(compiled, EXAMPLE_GEN_ID, data.split_layout())
    output.write_text(json.dumps(compiled))
    return output


def submit(template: pathlib.Path, cloud: CloudConfig, schedule: Optional[str] = None,
           stamp: Optional[str] = None) -> Dict[str, str]:
    """Starts a run (or creates a schedule) of the compiled pipeline on Vertex AI Pipelines."""
    from google.cloud import aiplatform

    stamp = stamp or datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"{config.PIPELINE_NAME}-{stamp}"
    job_args: Dict[str, Any] = dict(
        display_name=name, template_path=str(template), pipeline_root=cloud.pipeline_root,
        project=cloud.project, location=cloud.region, enable_caching=cloud.enable_cache)
    console = f"https://console.cloud.google.com/vertex-ai/pipelines?project={cloud.project}"
    if schedule:
        job = aiplatform.PipelineJob(**job_args)
        created = job.create_schedule(cron=schedule, display_name=name,
                                      service_account=cloud.service_account_email)
        log.info("Created schedule %s (%s): %s", name, schedule,
                 getattr(created, "resource_name", ""))
        return {"schedule": name, "console": f"{console}&tab=schedules"}
    job = aiplatform.PipelineJob(job_id=name, **job_args)
    job.submit(service_account=cloud.service_account_email)
    url = (f"https://console.cloud.google.com/vertex-ai/locations/{cloud.region}/pipelines/runs/"
           f"{name}?project={cloud.project}")
    log.info("Submitted run %s; watch it at %s", name, url)
    return {"run": name, "console": url}


def warn_if_image_is_other_code(cloud: CloudConfig) -> None:
    """A given image tag that is not this code's fingerprint may hold other code."""
    expected = fingerprints.image_tag()
    tag = image_tag_of(cloud.image_uri)
    if "@sha256:" not in cloud.image_uri and tag != expected:
        log.warning("The image %s is tagged %s, not with this code's fingerprint %s: unless it "
                    "was built from exactly this checkout, the tasks run other code than this "
                    "checkout's (build it as docs/cloud.md shows, or leave --image unset).",
                    cloud.image_uri, tag, expected)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.command == "image-tag":
        try:
            print(fingerprints.image_tag())
        except FileNotFoundError as error:
            print(f"vertex_runner.py image-tag: error: {error}", file=sys.stderr)
            return 2
        return 0
    logs.setup(args.verbose)
    try:
        cloud = cloud_from_flags(args)
        data = config.from_flags(config.DataConfig, args)
        data.split_buckets()  # validates the split and span flags before anything is built
        data.span_range()
        warn_if_image_is_other_code(cloud)
    except (MissingSetting, ValueError, FileNotFoundError) as error:
        print(f"vertex_runner.py {args.command}: error: {error}", file=sys.stderr)
        return 2
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    definition = build_pipeline(
        cloud, data, config.from_flags(config.TrainingConfig, args),
        config.from_flags(HyperParameters, args), config.from_flags(config.EvaluationConfig, args))
    template = compile_pipeline(definition, cloud, args.output, data)
    log.info("Compiled %d components (%s) to %s", len(definition.components),
             ", ".join(c.id for c in definition.components), template)
    if args.command == "submit":
        from google.auth.exceptions import DefaultCredentialsError

        try:
            submit(template, cloud, args.schedule, stamp=stamp)
        except DefaultCredentialsError as error:
            log.error("No Google Cloud credentials (%s). Run `gcloud auth application-default "
                      "login`, or set GOOGLE_APPLICATION_CREDENTIALS.", error)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
