"""ServingPusher: pushes blessed models into a TF Serving directory, whole or not at all.

Stock Pusher copies straight into the final version directory, so a server polling the
directory can load a half-copied model, and a rerun that re-blesses the same model pushes it
again as a new version. This pusher copies into a hidden staging directory beside the versions
and renames it into place (atomic on one filesystem), and skips a model that already serves as
the newest version. Pushes into one serving directory take turns under a file lock, so two runs
pushing at once never pick the same version or touch each other's copy; a staging directory
found while holding the lock was left by a process that died mid-push, and is removed. Either
way it writes the decision, with TFMA's reasons, as JSON.
"""
import contextlib
import errno
import fcntl
import json
import logging
import os
import pathlib
import shutil
import time
from typing import Any, Dict, Iterator, List, Optional

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model, ModelBlessing, ModelEvaluation, PushedModel
from tfx.utils import path_utils

PUSH_RECORD = "babyweight_push.json"
STAGING_SUFFIX = ".incomplete"
LOCK_TIMEOUT_S = 600.0

log = logging.getLogger("babyweight.serving_pusher")


class PushError(RuntimeError):
    """A push that could not land; the message says why and nothing was changed."""


def is_version_name(name: str) -> bool:
    """TF Serving's version directories are ASCII-digit names; '²' or '.1.incomplete' are not."""
    return name.isascii() and name.isdigit()


def serving_versions(serving_dir: pathlib.Path) -> Dict[int, pathlib.Path]:
    """The complete version directories TF Serving would load: integer names only."""
    if not serving_dir.is_dir():
        return {}
    return {int(p.name): p for p in serving_dir.iterdir()
            if is_version_name(p.name) and p.is_dir()}


def latest_push_record(serving_dir: pathlib.Path) -> Optional[Dict[str, Any]]:
    versions = serving_versions(serving_dir)
    if not versions:
        return None
    record = versions[max(versions)] / PUSH_RECORD
    return json.loads(record.read_text()) if record.exists() else None


def lock_path(serving_dir: pathlib.Path) -> pathlib.Path:
    """Beside the serving directory, so that its listing holds only versions and staging."""
    return serving_dir.parent / f".{serving_dir.name}.push.lock"


@contextlib.contextmanager
def push_lock(serving_dir: pathlib.Path, timeout_s: float = LOCK_TIMEOUT_S,
              wait: bool = True) -> Iterator[bool]:
    """Holds the serving directory's push lock; yields False when `wait` is off and it is held.

    An fcntl lock dies with its process, so a push killed halfway never blocks the next one.
    """
    serving_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(serving_dir), "a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                if time.monotonic() > deadline:
                    raise PushError(
                        f"another push into {serving_dir} held its lock ({lock_path(serving_dir)}) "
                        f"for over {timeout_s:.0f} s; nothing was pushed") from None
                time.sleep(0.05)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_stale_staging(serving_dir: pathlib.Path) -> List[pathlib.Path]:
    """Removes staging directories of dead pushes; call only while holding the push lock."""
    if not serving_dir.is_dir():
        return []
    stale = [p for p in serving_dir.iterdir()
             if p.name.startswith(".") and p.name.endswith(STAGING_SUFFIX)]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
        log.warning("Removed %s, the half-copied push of a run that stopped during its push",
                    path)
    return stale


def clean_up_dead_pushes(serving_dir: pathlib.Path) -> List[pathlib.Path]:
    """What a run killed mid-push left in `serving_dir`; nothing while a live push runs."""
    with push_lock(serving_dir, wait=False) as held:
        return remove_stale_staging(serving_dir) if held else []


def _rename_no_replace(staging: pathlib.Path, final: pathlib.Path) -> None:
    """os.rename, except that an existing `final` (even an empty one) is an error, not a target."""
    if final.exists():
        raise PushError(f"version directory {final} already exists; nothing was pushed")
    try:
        os.rename(staging, final)
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise PushError(f"version directory {final} already exists; nothing was pushed") \
                from error
        raise


def push_atomically(model_dir: pathlib.Path, serving_dir: pathlib.Path,
                    record: Dict[str, Any]) -> int:
    """Copies `model_dir` to serving_dir/<version>/ via a staging name; returns the version.

    Versions are the push's second, or one more than the newest version when that is not
    larger, so they are unique and increase even for pushes within one second.
    """
    serving_dir.mkdir(parents=True, exist_ok=True)
    with push_lock(serving_dir):
        return push_while_locked(model_dir, serving_dir, record)


def push_while_locked(model_dir: pathlib.Path, serving_dir: pathlib.Path,
                      record: Dict[str, Any]) -> int:
    """push_atomically's work, for a caller that already holds the push lock."""
    serving_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(serving_dir)
    version = max(int(time.time()), max(serving_versions(serving_dir), default=0) + 1)
    staging = serving_dir / f".{version}.{os.getpid()}{STAGING_SUFFIX}"
    try:
        shutil.copytree(model_dir, staging)
        (staging / PUSH_RECORD).write_text(json.dumps({**record, "version": version}, indent=2))
        _rename_no_replace(staging, serving_dir / str(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version


@component
def ServingPusher(  # pylint: disable=invalid-name
    model: InputArtifact[Model],
    model_blessing: InputArtifact[ModelBlessing],
    evaluation: InputArtifact[ModelEvaluation],
    pushed_model: OutputArtifact[PushedModel],
    serving_dir: Parameter[str],
    report_path: Parameter[str],
) -> None:
    """Pushes `model` if blessed and not already the newest version; reports why either way."""
    from pipelines import evaluation as evaluation_lib

    target = pathlib.Path(serving_dir)
    blessed = bool(model_blessing.get_int_custom_property("blessed"))
    _, reasons = evaluation_lib.describe_validation(evaluation.uri)
    metrics = evaluation_lib.read_metrics(evaluation.uri)
    overall = next((m for m in metrics if m.slice_name == evaluation_lib.OVERALL), None)
    decision: Dict[str, Any] = {
        "blessed": blessed,
        "pushed": False,
        "model_uri": model.uri,
        "model_id": model.id,
        "eval_rmse": overall.rmse if overall else None,
        "eval_mae": overall.mae if overall else None,
        "baseline_rmse": overall.baseline_rmse if overall else None,
        "eval_examples": overall.example_count if overall else None,
        "reasons": reasons,
    }
    with push_lock(target):  # the newest version cannot change between the check and the push
        latest = latest_push_record(target)
        if not blessed:
            decision["message"] = "Model not blessed; nothing was pushed."
        elif latest is not None and latest.get("model_uri") == model.uri:
            decision["message"] = (f"This model already serves as version {latest['version']}; "
                                   "nothing new to push.")
            decision["version"] = latest["version"]
        else:
            version = push_while_locked(
                pathlib.Path(path_utils.serving_model_path(model.uri)), target, decision)
            decision.update(pushed=True, version=version,
                            message=f"Pushed as version {version} to {target / str(version)}")
    pushed_model.set_int_custom_property("pushed", int(decision["pushed"]))
    if decision.get("version") is not None:
        pushed_model.set_string_custom_property("pushed_destination",
                                                str(target / str(decision["version"])))
        pushed_model.set_int_custom_property("pushed_version", int(decision["version"]))
    report = pathlib.Path(report_path)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(decision, indent=2))
