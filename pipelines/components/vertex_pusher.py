"""VertexServingPusher: the push stage of the Vertex AI run (pipelines/vertex_push.py).

TFX's Vertex AI pusher uploads the model with a prebuilt container and no container spec, so
it cannot serve with stock TF Serving at the training TensorFlow version, and it knows nothing
of the evaluation a model card is written from. This component takes the evaluation, the
statistics and the examples too, and pushes each blessed model as one version directory that
carries its push record and model card, to the endpoint and/or the GCS serving directory.
"""
import json

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import (Examples, ExampleStatistics, HyperParameters, Model,
                                          ModelBlessing, ModelEvaluation, PushedModel)

# Filled in by vertex_runner.py once the Trainer's fingerprint is stamped.
TRAINER_PARAMETER = "trainer"


def _custom_properties(artifact) -> dict:
    """An artifact's properties and custom properties by name, as the report readers take them."""
    from reports import mlmd

    return mlmd.properties_of(artifact.mlmd_artifact)


@component
def VertexServingPusher(  # pylint: disable=invalid-name
    model: InputArtifact[Model],
    model_blessing: InputArtifact[ModelBlessing],
    evaluation: InputArtifact[ModelEvaluation],
    statistics: InputArtifact[ExampleStatistics],
    examples: InputArtifact[Examples],
    pushed_model: OutputArtifact[PushedModel],
    push_to: Parameter[str],
    serving_dir: Parameter[str],
    deployment: Parameter[str],
    run_name: Parameter[str],
    pipeline_name: Parameter[str],
    trainer: Parameter[str],
    report_path: Parameter[str],
    best_hyperparameters: InputArtifact[HyperParameters] = None,
) -> None:
    """Pushes `model` if blessed, with its model card; reports the decision either way."""
    from tfx.utils import path_utils

    from common.gcs import mounted
    from pipelines import vertex_push

    inputs = vertex_push.PushInputs(
        # Found on the mount, as every file the push reads (no Cloud Storage client here).
        model_uri=model.uri,
        serving_model_uri=path_utils.serving_model_path(str(mounted(model.uri))),
        blessing=_custom_properties(model_blessing), evaluation_uri=evaluation.uri,
        statistics_uri=statistics.uri, statistics_splits=statistics.split_names,
        examples_uri=examples.uri, examples_properties=_custom_properties(examples),
        best_hyperparameters_uri=best_hyperparameters.uri if best_hyperparameters else None)
    settings = vertex_push.PushSettings(
        push_to=push_to, serving_dir=serving_dir, pushed_uri=pushed_model.uri,
        deployment=json.loads(deployment), run_name=run_name, pipeline_name=pipeline_name,
        trainer=json.loads(trainer or "{}"), report_path=report_path)
    decision = vertex_push.push(inputs, settings)
    pushed_model.set_int_custom_property("pushed", int(decision["pushed"]))
    if decision.get("pushed"):
        pushed_model.set_string_custom_property("pushed_destination", decision["destination"])
        pushed_model.set_int_custom_property("pushed_version", int(decision["version"]))
