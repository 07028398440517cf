"""Typed configuration of a Google Cloud run (Vertex AI Pipelines, BigQuery, Dataflow).

Same mechanism as `pipelines.config`: one dataclass field per setting, turned into a --flag by
`config.add_flags`. Cloud settings also fall back to environment variables, so a CI job or a
platform team's shell profile can hold them: a flag wins, then the first variable that is set,
then the default. Derived defaults (service account, image) follow the names `docs/cloud.md`
creates, so only the project and the bucket are required.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, get_type_hints

from pipelines import config, fingerprints
from pipelines.config import PIPELINE_NAME

# Where the Dockerfile puts the project in the image: module code, schema and SQL live here.
IMAGE_PROJECT_DIR = "/babyweight"
TFX_IMAGE = "gcr.io/tfx-oss-public/tfx:1.16.0"
# The endpoint serves with stock TF Serving at the TensorFlow version the model is saved with
# (tests/test_vertex_serving.py fails when the lock moves TensorFlow and this stays behind).
TF_SERVING_VERSION = "2.16.1"
TF_SERVING_SOURCE = f"tensorflow/serving:{TF_SERVING_VERSION}"
PUSH_TARGETS = ("endpoint", "gcs", "both")


class MissingSetting(ValueError):
    """A required cloud setting has no flag and no environment variable."""


def cloud_setting(default: Any, help: str, env: Sequence[str] = (),  # noqa: A002
                  required: bool = False, **kwargs: Any) -> Any:
    """A `config.setting` that also names its environment fallbacks (shown in --help)."""
    extra = f" [env: {', '.join(env)}]" if env else ""
    if required:
        extra = " Required." + extra
    return dataclasses.field(default=default, metadata={
        "help": help + extra, "env": tuple(env), "required": required, **kwargs})


@dataclasses.dataclass(frozen=True)
class CloudConfig:
    """Google Cloud: project, region, bucket, images and the machines each engine uses."""

    project: Optional[str] = cloud_setting(
        None, "Google Cloud project that runs and pays for the pipeline.",
        env=("BABYWEIGHT_PROJECT", "GOOGLE_CLOUD_PROJECT"), required=True)
    region: str = cloud_setting(
        "us-central1", "Region of Vertex AI Pipelines, Training, the endpoint and Dataflow.",
        env=("BABYWEIGHT_REGION", "GOOGLE_CLOUD_REGION"))
    bucket: Optional[str] = cloud_setting(
        None, "Cloud Storage bucket (name or gs://name) for the pipeline root, Dataflow's "
        "temp/staging files, reports and the GCS serving directory.",
        env=("BABYWEIGHT_BUCKET",), required=True)
    bigquery_project: Optional[str] = cloud_setting(
        None, "Project billed for the BigQuery query (Beam's temporary dataset is created "
        "there, and ExampleGen's Dataflow job runs there); default: --project. The table "
        "stays bigquery-public-data.samples.natality, as in the .sql file.",
        env=("BABYWEIGHT_BIGQUERY_PROJECT",))
    service_account: Optional[str] = cloud_setting(
        None, "Service account the pipeline, Dataflow workers and training jobs run as; "
        "default: babyweight-pipelines@<project>.iam.gserviceaccount.com.",
        env=("BABYWEIGHT_SERVICE_ACCOUNT",))
    image: Optional[str] = cloud_setting(
        None, f"Container image of the components and Dataflow workers: {TFX_IMAGE} with this "
        "project installed (see Dockerfile), named by a digest (@sha256:...) or a tag other "
        "than latest; default: <region>-docker.pkg.dev/<project>/babyweight/babyweight:<the "
        "code's fingerprint> (`vertex_runner.py image-tag`).",
        env=("BABYWEIGHT_IMAGE",))
    dataflow_machine_type: str = cloud_setting(
        "n1-standard-4", "Dataflow worker machine type.",
        env=("BABYWEIGHT_DATAFLOW_MACHINE_TYPE",))
    dataflow_max_workers: int = cloud_setting(
        10, "Most Dataflow workers one Beam job autoscales to (caps the cost).",
        env=("BABYWEIGHT_DATAFLOW_MAX_WORKERS",))
    training_machine_type: str = cloud_setting(
        "n1-standard-8", "Vertex AI Training machine type of the Trainer and Tuner.",
        env=("BABYWEIGHT_TRAINING_MACHINE_TYPE",))
    training_accelerator_type: Optional[str] = cloud_setting(
        None, "Accelerator of the training machine, e.g. NVIDIA_TESLA_T4; default: none.",
        env=("BABYWEIGHT_TRAINING_ACCELERATOR_TYPE",))
    training_accelerator_count: int = cloud_setting(
        0, "Accelerators per training machine (needs --training-accelerator-type).",
        env=("BABYWEIGHT_TRAINING_ACCELERATOR_COUNT",))
    push_to: str = cloud_setting(
        "endpoint", "Where a blessed model goes: a Vertex AI endpoint (created if missing), "
        "the GCS serving directory gs://<bucket>/babyweight/serving, or both.",
        env=("BABYWEIGHT_PUSH_TO",), choices=PUSH_TARGETS)
    endpoint_name: str = cloud_setting(
        "babyweight", "Display name of the Vertex AI endpoint.",
        env=("BABYWEIGHT_ENDPOINT_NAME",))
    serving_machine_type: str = cloud_setting(
        "n1-standard-2", "Machine type of the endpoint's replicas.",
        env=("BABYWEIGHT_SERVING_MACHINE_TYPE",))
    serving_max_replicas: int = cloud_setting(
        1, "Most replicas the endpoint autoscales to (one always runs, and is billed).",
        env=("BABYWEIGHT_SERVING_MAX_REPLICAS",))
    serving_image: Optional[str] = cloud_setting(
        None, f"The endpoint's serving container: {TF_SERVING_SOURCE} mirrored into Artifact "
        "Registry (Vertex AI pulls from there only; docs/cloud.md shows how), named by a "
        "digest or a version tag at the TensorFlow version the model is trained with; "
        f"default: <region>-docker.pkg.dev/<project>/babyweight/tf-serving:{TF_SERVING_VERSION}.",
        env=("BABYWEIGHT_SERVING_IMAGE",))
    enable_cache: bool = cloud_setting(
        True, "Reuse outputs of components whose inputs did not change.",
        env=("BABYWEIGHT_ENABLE_CACHE",))

    def __post_init__(self) -> None:
        if self.bucket:
            object.__setattr__(self, "bucket", self.bucket.removeprefix("gs://").strip("/"))
        if self.push_to not in PUSH_TARGETS:
            raise ValueError(f"--push-to must be one of {PUSH_TARGETS}, got {self.push_to!r}")
        if self.image:
            check_image(self.image)
        if self.serving_image:
            check_image(self.serving_image, "--serving-image")
            check_serving_version(self.serving_image)
        if bool(self.training_accelerator_type) != (self.training_accelerator_count > 0):
            raise ValueError("--training-accelerator-type and --training-accelerator-count "
                             "go together (a type needs a count of at least 1)")

    # Derived values: one place names every Cloud Storage path and default resource.

    @property
    def root(self) -> str:
        """gs://<bucket>/babyweight: everything this pipeline writes lives under it."""
        return f"gs://{self.bucket}/{PIPELINE_NAME}"

    @property
    def pipeline_root(self) -> str:
        return f"{self.root}/pipeline_root"

    @property
    def serving_dir(self) -> str:
        return f"{self.root}/serving"

    @property
    def reports_dir(self) -> str:
        """The bucket as the components see it: Vertex AI mounts Cloud Storage at /gcs/."""
        return f"/gcs/{self.bucket}/{PIPELINE_NAME}/reports"

    @property
    def service_account_email(self) -> str:
        return (self.service_account
                or f"{PIPELINE_NAME}-pipelines@{self.project}.iam.gserviceaccount.com")

    @property
    def image_uri(self) -> str:
        """The image every task runs. By default its tag is the fingerprint of the files the
        image is built from, so a task never runs other code than this checkout's: after an
        edit, an image not rebuilt fails to pull instead of running the old code."""
        return (self.image or f"{self.region}-docker.pkg.dev/{self.project}/{PIPELINE_NAME}/"
                f"{PIPELINE_NAME}:{fingerprints.image_tag()}")

    @property
    def serving_image_uri(self) -> str:
        """The endpoint's TF Serving image: the mirror docs/cloud.md creates, by default."""
        return (self.serving_image or f"{self.region}-docker.pkg.dev/{self.project}/"
                f"{PIPELINE_NAME}/tf-serving:{TF_SERVING_VERSION}")

    @property
    def billing_project(self) -> str:
        return self.bigquery_project or str(self.project)

    def beam_pipeline_args(self) -> Tuple[str, ...]:
        """Dataflow for every Beam component, on workers running the pipeline's own image.

        `--sdk_location=container` uses the Beam SDK already in the image instead of staging
        one from PyPI; the image also holds the module code, so `modules.*` imports on workers.
        """
        return (
            "--runner=DataflowRunner",
            f"--project={self.project}",
            f"--region={self.region}",
            f"--temp_location={self.root}/dataflow/tmp",
            f"--staging_location={self.root}/dataflow/staging",
            f"--service_account_email={self.service_account_email}",
            f"--machine_type={self.dataflow_machine_type}",
            f"--max_num_workers={self.dataflow_max_workers}",
            f"--sdk_container_image={self.image_uri}",
            "--sdk_location=container",
            "--experiments=use_runner_v2",
        )

    def worker_pool_specs(self) -> List[Dict[str, Any]]:
        """One Vertex AI Training worker (the primary replica) running the pipeline's image."""
        machine: Dict[str, Any] = {"machine_type": self.training_machine_type}
        if self.training_accelerator_type:
            machine.update(accelerator_type=self.training_accelerator_type,
                           accelerator_count=self.training_accelerator_count)
        return [{"machine_spec": machine, "replica_count": 1,
                 "container_spec": {"image_uri": self.image_uri}}]

    def training_job_args(self) -> Dict[str, Any]:
        """A Vertex AI CustomJob as TFX's training extensions take it (`project` + `job_spec`)."""
        return {"project": self.project,
                "job_spec": {"worker_pool_specs": self.worker_pool_specs(),
                             "service_account": self.service_account_email}}

    def deployment(self) -> Dict[str, Any]:
        """Where and how the pusher deploys: the endpoint, its machines, the serving image."""
        return {"project": self.project, "region": self.region,
                "endpoint_name": self.endpoint_name, "image": self.serving_image_uri,
                "machine_type": self.serving_machine_type, "min_replica_count": 1,
                "max_replica_count": self.serving_max_replicas}


def image_tag_of(image: str) -> Optional[str]:
    """The tag of an image reference ('repo/name:tag'), None when it has none."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def check_image(image: str, flag: str = "--image") -> None:
    """Refuses an image named by `latest` (or by no tag, which means latest).

    Vertex AI caches a task by its image's name: after a rebuild, `:latest` names other code
    while every cached task still counts as done with it; a serving image named `latest`
    would serve with whatever TensorFlow it names on the day of the push.
    """
    if "@sha256:" in image:
        return
    tag = image_tag_of(image)
    if tag in (None, "latest"):
        implied = " (no tag means latest)" if tag is None else ""
        own = ("the default tag is the code's fingerprint (`vertex_runner.py image-tag`)"
               if flag == "--image" else f"e.g. :{TF_SERVING_VERSION}")
        raise ValueError(
            f"{flag} {image} names the moving tag latest{implied}: what it runs would change "
            "under the same name. Name it by digest (@sha256:...) or by a tag of its own; "
            + own)


def training_tf_version() -> str:
    """major.minor of the TensorFlow installed here: the one the Trainer saves models with."""
    from importlib import metadata

    for distribution in ("tensorflow", "tensorflow-cpu"):
        try:
            return ".".join(metadata.version(distribution).split(".")[:2])
        except metadata.PackageNotFoundError:
            continue
    raise ValueError("TensorFlow is not installed here, so the serving image's version cannot "
                     "be checked against the one the model is trained with: run from the "
                     "project's environment (make install)")


def check_serving_version(image: str) -> None:
    """A serving image tagged with a version must be the training TensorFlow's major.minor.

    An older TF Serving may lack ops or SavedModel features of a newer TensorFlow; a digest or
    a tag that is not a version is taken as given.
    """
    tag = image_tag_of(image)
    parts = (tag or "").split("-")[0].split(".")
    if "@sha256:" in image or len(parts) < 2 or not all(p.isdigit() for p in parts):
        return
    served, trained = ".".join(parts[:2]), training_tf_version()
    if served != trained:
        raise ValueError(
            f"--serving-image {image} is TF Serving {served}, but models are saved with "
            f"TensorFlow {trained}: serve with tensorflow/serving at {trained} "
            f"(default: {TF_SERVING_VERSION}, mirrored as docs/cloud.md shows)")


def _convert(value: str, hint: Any, flag: str) -> Any:
    """An environment variable's text as the field's type."""
    hint = config.flag_type(hint)
    if hint is bool:
        lowered = value.strip().lower()
        if lowered not in ("1", "true", "yes", "0", "false", "no"):
            raise ValueError(f"{flag}: expected true/false, got {value!r}")
        return lowered in ("1", "true", "yes")
    try:
        return hint(value)
    except ValueError as error:
        raise ValueError(f"{flag}: {error}") from None


def flag_name(field: dataclasses.Field) -> str:
    return "--" + field.name.replace("_", "-")


def add_cloud_flags(parser: argparse.ArgumentParser) -> None:
    """CloudConfig's flags; unset flags parse as None so the environment can fill them in."""
    config.add_flags(parser, CloudConfig)
    parser.set_defaults(**{f.name: None for f in dataclasses.fields(CloudConfig)})
    # A --flag/--no-flag prints its parse default, now None: it shows the real one instead.
    switches = {f.name: f.default for f in dataclasses.fields(CloudConfig)
                if isinstance(f.default, bool)}
    for action in parser._actions:  # noqa: SLF001 - argparse's documented-in-practice list
        if action.dest in switches and action.help:
            action.help = action.help.replace(
                "%(default)s", "on" if switches[action.dest] else "off")


def cloud_from_flags(args: argparse.Namespace,
                     environ: Optional[Mapping[str, str]] = None) -> CloudConfig:
    """Flag, else environment, else default; a missing required value raises MissingSetting."""
    environ = os.environ if environ is None else environ
    hints = get_type_hints(CloudConfig)
    values: Dict[str, Any] = {}
    for field in dataclasses.fields(CloudConfig):
        value = getattr(args, field.name, None)
        if value is None:
            for variable in field.metadata.get("env", ()):
                if environ.get(variable):
                    value = _convert(environ[variable], hints[field.name], variable)
                    break
        if value is None:
            value = field.default
        if value is None and field.metadata.get("required"):
            names = " or ".join(field.metadata.get("env", ()))
            raise MissingSetting(f"missing required setting {flag_name(field)}"
                                 + (f" (or set {names})" if names else ""))
        values[field.name] = value
    return CloudConfig(**values)
