"""The span driver on Vertex AI: ExampleGen's pre-cache-check hook.

Vertex AI caches a task on its parameters. A query-based ExampleGen's parameters are the query
text, fixed when the pipeline is compiled, so a scheduled run would reuse the first run's
examples forever. TFX's compiler gives file-based ExampleGens a driver hook that Vertex AI runs
before its cache check (`lifecycle.preCacheCheck`, tfx.orchestration.kubeflow.v2.
file_based_example_gen.driver); `add_pre_cache_check` gives the BigQuery ExampleGen the same
hook, running this module: it resolves the spans on BigQuery and writes the resolved
parameters (span, fingerprint, the span-restricted queries) where Vertex AI and TFX's executor
entrypoint read them, so new data means a new cache key and the executor reads the new span.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

HOOK_MODULE = "pipelines.components.vertex_span_driver"
INVOCATION_FLAG = "--json_serialized_invocation_args"
INPUTS_SPEC_FLAG = "--json_serialized_inputs_spec_args"
SETTINGS_FLAG = "--span_settings"


def add_pre_cache_check(pipeline_json: Dict[str, Any], task_id: str,
                        settings: Dict[str, Any]) -> None:
    """Adds the hook to `task_id`'s executor in a compiled Vertex AI pipeline JSON (in place).

    The hook bills its query to the project the executor's own `--project` flag names.
    """
    spec = pipeline_json["pipelineSpec"]
    label = spec["components"][task_id]["executorLabel"]
    container = spec["deploymentSpec"]["executors"][label]["container"]
    executor_args: List[str] = container["args"]
    args = [INVOCATION_FLAG, "{{$}}", SETTINGS_FLAG, json.dumps(settings, sort_keys=True)]
    if INPUTS_SPEC_FLAG in executor_args:
        position = executor_args.index(INPUTS_SPEC_FLAG)
        args += executor_args[position:position + 2]
    args += [arg for arg in executor_args if arg.startswith("--project=")][-1:]
    container["lifecycle"] = {"preCacheCheck": {
        "command": ["python", "-m", HOOK_MODULE], "args": args}}


def _parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=HOOK_MODULE)
    parser.add_argument(INVOCATION_FLAG, dest="invocation", required=True)
    parser.add_argument(INPUTS_SPEC_FLAG, dest="inputs_spec", default=None)
    parser.add_argument(SETTINGS_FLAG, dest="settings", default=None)
    parser.add_argument("--project", default=None)
    return parser.parse_args(argv)


def run_hook(invocation: str, inputs_spec: Optional[str], settings: Dict[str, Any],
             project: Optional[str]) -> None:
    """Resolves the spans and writes the ExecutorOutput the executor and Vertex AI read."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.components.example_gen import driver as tfx_driver
    from tfx.components.example_gen import utils as example_gen_utils
    from tfx.dsl.io import fileio
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as kfp_utils
    from tfx.types import artifact_utils, standard_component_specs

    from pipelines.components.bigquery_example_gen import read_bigquery_spans
    from pipelines.components.span_driver import resolve

    executor_input = pipeline_spec_pb2.ExecutorInput()
    json_format.Parse(invocation, executor_input, ignore_unknown_fields=True)
    spec = None
    if inputs_spec:
        spec = pipeline_spec_pb2.ComponentInputsSpec()
        json_format.Parse(inputs_spec, spec, ignore_unknown_fields=True)
    exec_properties = kfp_utils.parse_execution_properties(
        executor_input.inputs.parameter_values, executor_input.inputs.parameters, spec)
    name_from_id: Dict[int, str] = {}
    outputs = kfp_utils.parse_raw_artifact_dict(executor_input.outputs.artifacts, name_from_id)
    resolve(exec_properties, read_bigquery_spans(project), settings)
    examples = artifact_utils.get_single_instance(
        outputs[standard_component_specs.EXAMPLES_KEY])
    tfx_driver.update_output_artifact(exec_properties, examples.mlmd_artifact)

    output = pipeline_spec_pb2.ExecutorOutput()
    resolved = {key: exec_properties[key] for key in (
        example_gen_utils.SPAN_PROPERTY_NAME, example_gen_utils.FINGERPRINT_PROPERTY_NAME,
        standard_component_specs.INPUT_CONFIG_KEY)}
    for key, value in resolved.items():
        # Both forms: pipeline spec 2.1 reads parameter_values, 2.0 the older parameters.
        if isinstance(value, int):
            output.parameter_values[key].number_value = value
            output.parameters[key].int_value = value
        else:
            output.parameter_values[key].string_value = value
            output.parameters[key].string_value = value
    output.artifacts[standard_component_specs.EXAMPLES_KEY].artifacts.add().CopyFrom(
        kfp_utils.to_runtime_artifact(examples, name_from_id))
    path = executor_input.outputs.output_file
    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "wb") as handle:
        handle.write(json_format.MessageToJson(output, sort_keys=True))


def main(argv: Optional[List[str]] = None) -> int:
    """Exit 2 with the reason when the spans cannot make the run's splits."""
    from common.errors import exit_code
    from pipelines.components.span_driver import SpanSelectionFailed, parse_settings

    args = _parse_args(sys.argv[1:] if argv is None else argv)
    return exit_code(lambda: run_hook(args.invocation, args.inputs_spec,
                                      parse_settings(args.settings), args.project),
                     (SpanSelectionFailed,), 2, prefix="ExampleGen")


if __name__ == "__main__":
    sys.exit(main())
