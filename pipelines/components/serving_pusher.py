"""ServingPusher: pushes blessed models into a TF Serving directory, whole or not at all.

Stock Pusher copies straight into the final version directory, so a server polling the
directory can load a half-copied model, and a rerun that re-blesses the same model pushes it
again as a new version. This pusher pushes through pipelines/atomic_push.py (a staging copy
renamed into place, under a lock shared by every pusher of the directory), and skips a model
the newest version was pushed from (the same files, wherever they were written). Either way
it writes the decision, with TFMA's reasons, as JSON.
"""
import json
import pathlib
from typing import Any, Dict

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model, ModelBlessing, ModelEvaluation, PushedModel
from tfx.utils import path_utils

from pipelines.atomic_push import (  # noqa: F401  (the pusher's API, used by tests and runners)
    PUSH_RECORD, STAGING_SUFFIX, PushError, clean_up_dead_pushes, is_version_name,
    latest_push_record, lock_path, model_digest, newest_serving_as, push_atomically, push_lock,
    push_while_locked, remove_stale_staging, serving_versions)


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
    from reports import evaluation_results as evaluation_lib

    target = pathlib.Path(serving_dir)
    source = pathlib.Path(path_utils.serving_model_path(model.uri))
    blessed = bool(model_blessing.get_int_custom_property("blessed"))
    _, reasons = evaluation_lib.describe_validation(evaluation.uri)
    metrics = evaluation_lib.read_metrics(evaluation.uri)
    overall = next((m for m in metrics if m.slice_name == evaluation_lib.OVERALL), None)
    decision: Dict[str, Any] = {
        "blessed": blessed,
        "pushed": False,
        "model_uri": model.uri,
        "model_id": model.id,
        "model_digest": model_digest(source),
        "eval_rmse": overall.rmse if overall else None,
        "eval_mae": overall.mae if overall else None,
        "baseline_rmse": overall.baseline_rmse if overall else None,
        "eval_examples": overall.example_count if overall else None,
        "reasons": reasons,
    }
    with push_lock(target):  # the newest version cannot change between the check and the push
        serving = newest_serving_as(target, decision["model_digest"], model.uri) \
            if blessed else None
        if not blessed:
            decision["message"] = "Model not blessed; nothing was pushed."
        elif serving is not None:
            decision["message"] = (f"This model already serves as version {serving}; "
                                   "nothing new to push.")
            decision["version"] = serving
        else:
            version = push_while_locked(source, target, decision)
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
