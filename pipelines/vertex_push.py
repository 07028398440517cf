"""The Vertex AI run's push: a version directory with its push record and model card, then the
endpoint (TF Serving at the training TensorFlow version) and/or the GCS serving directory.

The local run's model card is written when its report is published from the local ML Metadata
store; a Vertex AI run has no such store on this side, so the push writes the card itself,
from the artifacts the pipeline hands it (read through the /gcs/ mount): the same RunFacts
readers and the same card as a local run, with a RunRecord assembled from those artifacts.

A version directory on Cloud Storage cannot be renamed into place (Cloud Storage FUSE has no
atomic directory rename), so it is written with saved_model.pb last: a TF Serving polling the
serving directory cannot load a version before every other file of it is there.

Cloud Storage has no lock two runs' pushes could take either, so a push claims its version
number by creating the empty version directory (a create that fails when the directory exists,
as a Cloud Storage FUSE mkdir does): of two runs that chose the same number at once, the one
whose create fails takes the next number. A failed push removes only the directories it created.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import pathlib
import shutil
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from pipelines import atomic_push, vertex_serving
from pipelines.vertex_serving import mounted

log = logging.getLogger("babyweight.vertex_push")

PUSH_RECORD = atomic_push.PUSH_RECORD
GRAPH_FILE = "saved_model.pb"
ENDPOINT, GCS = "endpoint", "gcs"
# Numbers a push tries before giving up: each failed claim is another push taking the number.
CLAIM_ATTEMPTS = 100


@dataclasses.dataclass(frozen=True)
class PushInputs:
    """The artifacts the push reads, as their URIs (gs:// on Vertex AI) and properties."""

    model_uri: str
    serving_model_uri: str  # the SavedModel inside the Model artifact
    blessing: Dict[str, Any]  # the ModelBlessing's custom properties
    evaluation_uri: str
    statistics_uri: str
    statistics_splits: str  # the statistics artifact's split_names (JSON list)
    examples_uri: str
    examples_properties: Dict[str, Any]
    best_hyperparameters_uri: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class PushSettings:
    """The component's parameters: targets, deployment, and what the card says of the run."""

    push_to: str
    serving_dir: str  # gs://<bucket>/babyweight/serving
    pushed_uri: str  # the PushedModel artifact's own directory (what the endpoint uploads)
    deployment: Mapping[str, Any]  # pipelines.cloud_config.CloudConfig.deployment()
    run_name: str
    pipeline_name: str
    trainer: Mapping[str, Any]  # the Trainer's custom_config and source_fingerprint
    report_path: str  # push.json, in the run's reports directory (on the mount)


def _ref(type_name: str, uri: str, properties: Optional[Dict[str, Any]] = None) -> Any:
    from reports.mlmd import ArtifactRef

    return ArtifactRef(id=0, type_name=type_name, uri=str(mounted(uri)),
                       properties=dict(properties or {}))


def run_record(inputs: PushInputs, settings: PushSettings) -> Any:
    """The run as the report readers see one: the components whose artifacts reach the push."""
    from reports.mlmd import ComponentRun, RunRecord

    now = datetime.datetime.now(datetime.timezone.utc)

    def run(node: str, parameters: Dict[str, Any], inputs_: Dict[str, list],
            outputs: Dict[str, list]) -> ComponentRun:
        return ComponentRun(node, node, "COMPLETE", now, now, parameters, inputs_, outputs)

    examples = _ref("Examples", inputs.examples_uri, inputs.examples_properties)
    components = [
        run("StatisticsGen", {}, {"examples": [examples]}, {"statistics": [_ref(
            "ExampleStatistics", inputs.statistics_uri,
            {"split_names": inputs.statistics_splits})]}),
        run("Trainer", dict(settings.trainer), {"examples": [examples]},
            {"model": [_ref("Model", inputs.model_uri)]}),
        run("Evaluator", {}, {}, {"evaluation": [_ref("ModelEvaluation", inputs.evaluation_uri)],
                                  "blessing": [_ref("ModelBlessing", "", inputs.blessing)]}),
        run("ServingPusher", {"report_path": settings.report_path}, {}, {}),
    ]
    if inputs.best_hyperparameters_uri:
        components.insert(1, run("Tuner", {}, {}, {"best_hyperparameters": [
            _ref("HyperParameters", inputs.best_hyperparameters_uri)]}))
    return RunRecord(run_id=settings.run_name, pipeline_name=settings.pipeline_name,
                     started=now, components=components)


def copy_version(source: pathlib.Path, target: pathlib.Path, record: Dict[str, Any]) -> None:
    """Everything but the graph, the push record, then the graph: loadable only when whole.
    `target` is the empty directory this push claimed (claim_version)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(GRAPH_FILE),
                    dirs_exist_ok=True)
    (target / PUSH_RECORD).write_text(json.dumps(record, indent=2))


def finish_version(source: pathlib.Path, target: pathlib.Path) -> None:
    shutil.copy2(source / GRAPH_FILE, target / GRAPH_FILE)


def _next_version(settings: PushSettings) -> int:
    """The push's second, or one more than the serving directory's newest version when that
    is not larger (as the local pusher numbers versions)."""
    from common.versions import parse_version

    serving = mounted(settings.serving_dir)
    existing = [v for p in (serving.iterdir() if serving.is_dir() else [])
                if (v := parse_version(p.name)) is not None]
    return max(int(time.time()), max(existing, default=0) + 1)


def _serving_as(settings: PushSettings, digest: str, model_uri: str) -> Optional[int]:
    """The GCS serving directory's newest version when it was pushed from this model (as
    the local pusher decides), so a scheduled run with nothing new neither copies nor
    redeploys it. Pushing to the endpoint alone leaves no directory that runs share: then
    every blessed model is pushed."""
    if settings.push_to not in (GCS, "both"):
        return None
    return atomic_push.newest_serving_as(mounted(settings.serving_dir), digest, model_uri)


def _targets(settings: PushSettings, version: int) -> Dict[str, str]:
    """gs:// version directory per push target."""
    targets = {}
    if settings.push_to in (ENDPOINT, "both"):
        targets[ENDPOINT] = f"{settings.pushed_uri.rstrip('/')}/{version}"
    if settings.push_to in (GCS, "both"):
        targets[GCS] = f"{settings.serving_dir.rstrip('/')}/{version}"
    return targets


def _claim(directories: List[pathlib.Path]) -> bool:
    """Creates every directory, or none of them: False when one already exists, so another
    push holds that number."""
    made: List[pathlib.Path] = []
    try:
        for directory in directories:
            directory.parent.mkdir(parents=True, exist_ok=True)
            directory.mkdir()  # never exist_ok: the create is the claim
            made.append(directory)
    except BaseException as error:
        for directory in made:  # still empty: only just created
            directory.rmdir()
        if isinstance(error, FileExistsError):
            return False
        raise
    return True


def claim_version(settings: PushSettings) -> Tuple[int, Dict[str, str], List[pathlib.Path]]:
    """A version number and its directories, created empty by this push and by no other;
    the serving directory's first, the one other runs' pushes contend for."""
    version = _next_version(settings)
    for _ in range(CLAIM_ATTEMPTS):
        targets = _targets(settings, version)
        directories = [mounted(uri) for uri in targets.values()]
        if _claim([mounted(targets[k]) for k in (GCS, ENDPOINT) if k in targets]):
            return version, targets, directories
        log.info("Version %d was taken by another push; trying the next number", version)
        version = max(version + 1, _next_version(settings))
    parents = " and ".join(uri.rsplit("/", 1)[0] for uri in _targets(settings, version).values())
    raise atomic_push.PushError(f"other pushes took {CLAIM_ATTEMPTS} version numbers in a row "
                                f"in {parents}; nothing was pushed")


def _write_card(inputs: PushInputs, settings: PushSettings, directories: List[pathlib.Path]
                ) -> Optional[str]:
    """The model card into every version directory and beside the run's reports."""
    from reports import facts as facts_lib
    from reports import model_card

    facts = facts_lib.collect(run_record(inputs, settings))
    if not facts.metrics:
        raise RuntimeError(f"no evaluation metrics in {inputs.evaluation_uri} for the model "
                           "card; nothing was pushed")
    html = model_card.write(facts, directories, pathlib.Path(settings.report_path).parent)
    return str(html)


def push(inputs: PushInputs, settings: PushSettings) -> Dict[str, Any]:
    """Pushes a blessed model to the settings' targets; returns the decision (also push.json).

    A failure before the graph files are in place leaves no loadable version; the endpoint is
    deployed only once its version directory holds the model and its card.
    """
    from reports import evaluation_results as evaluation_lib

    blessed = bool(inputs.blessing.get("blessed"))
    metrics = evaluation_lib.read_metrics(str(mounted(inputs.evaluation_uri)))
    _, reasons = evaluation_lib.describe_validation(str(mounted(inputs.evaluation_uri)))
    overall = next((m for m in metrics if m.slice_name == evaluation_lib.OVERALL), None)
    decision: Dict[str, Any] = {
        "blessed": blessed, "pushed": False, "model_uri": inputs.model_uri,
        "eval_rmse": overall.rmse if overall else None,
        "eval_mae": overall.mae if overall else None,
        "baseline_rmse": overall.baseline_rmse if overall else None,
        "eval_examples": overall.example_count if overall else None,
        "reasons": reasons, "run_name": settings.run_name,
    }
    if not blessed:
        decision["message"] = "Model not blessed; nothing was pushed."
        return _report(decision, settings)
    source = mounted(inputs.serving_model_uri)
    decision["model_digest"] = atomic_push.model_digest(source)
    serving = _serving_as(settings, decision["model_digest"], inputs.model_uri)
    if serving is not None:
        decision.update(version=serving, message=f"This model already serves as version "
                        f"{serving}; nothing new to push or deploy.")
        return _report(decision, settings)
    version, targets, directories = claim_version(settings)
    decision.update(version=version, destination=next(iter(targets.values())),
                    destinations=targets)
    try:
        for directory in directories:
            copy_version(source, directory, {**decision, "pushed": True})
        _report({**decision, "pushed": True}, settings)  # what the card's push facts read
        decision["model_card"] = _write_card(inputs, settings, directories)
    except BaseException:
        for directory in directories:  # this push's own, no graph yet: never loaded
            shutil.rmtree(directory, ignore_errors=True)
        raise
    for directory in directories:
        finish_version(source, directory)
    if ENDPOINT in targets:
        decision["vertex"] = vertex_serving.deploy(settings.deployment, settings.pushed_uri,
                                                   version)
    decision.update(pushed=True, message=f"Pushed as version {version} to "
                    + " and ".join(targets.values()))
    for directory in directories:  # the record names the deployed model too
        (directory / PUSH_RECORD).write_text(json.dumps(decision, indent=2))
    return _report(decision, settings)


def _report(decision: Dict[str, Any], settings: PushSettings) -> Dict[str, Any]:
    report = pathlib.Path(settings.report_path)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(decision, indent=2))
    return decision
