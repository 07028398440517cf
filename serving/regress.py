"""TF Serving's Regress and Classify (REST `:regress`/`:classify`, gRPC) on serving/service.py.

Regress runs a signature whose method_name is `tensorflow/serving/regress` (one input
`inputs` of serialized tf.Examples, one output `outputs`); the export writes one named
`regression` (modules/signatures.py). Every example is checked like a :predict tf.Example
(serving/validation.py) before the model sees it. babyweight is a regression model, so
Classify always answers TF Serving's error for a signature of another method.
"""
from __future__ import annotations

import base64
from typing import Any, Dict, List, Sequence, Tuple

from modules.contract import REGRESS_INPUTS, REGRESS_METHOD, REGRESS_OUTPUTS
from serving import validation
from serving.service import ApiError, Service, Wanted

CLASSIFY_METHOD = "tensorflow/serving/classify"


def examples_of(proto_input: Any) -> List[bytes]:
    """A tensorflow.serving.Input's examples, context features merged in (TF Serving's rule:
    an example's own value wins over the context's)."""
    kind = proto_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in proto_input.example_list.examples]
    if kind == "example_list_with_context":
        listed = proto_input.example_list_with_context
        merged = []
        for example in listed.examples:
            combined = type(example)()
            combined.CopyFrom(listed.context)
            for key, value in example.features.feature.items():
                combined.features.feature[key].CopyFrom(value)
            merged.append(combined.SerializeToString())
        return merged
    raise ApiError(400, "Input is empty")


def _method_signature(shared: Service, served: Any, signature_name: str, method: str,
                      kind: str) -> Dict[str, Any]:
    name = signature_name or validation.DEFAULT_SIGNATURE
    found = served.signature_defs.get(name)
    if found is None:
        raise ApiError(400, f"No signature was found with the name: {name}")
    if found.get("method_name") != method:
        raise ApiError(400, f"Expected {kind} signature method_name to be {method}. "
                       f"Was: {found.get('method_name')}")
    return found


async def regress(shared: Service, model_name: str, version: Wanted,
                  signature_name: str, examples: Sequence[bytes]) -> Tuple[int, List[float]]:
    """(version that answered, one regression value per example)."""
    served = shared.acquire(model_name, version)
    try:
        name, checked = _checked_request(shared, served, signature_name, examples)
        outputs = await shared.call(served, name, {REGRESS_INPUTS: checked}, len(checked))
    finally:
        shared.release(served)
    return served.version, _values(outputs)


def _checked_request(shared: Service, served: Any, signature_name: str,
                     examples: Sequence[bytes]) -> Tuple[str, List[bytes]]:
    """(signature name, checked examples), or TF Serving's error for this signature."""
    _method_signature(shared, served, signature_name, REGRESS_METHOD, "regression")
    return (signature_name or validation.DEFAULT_SIGNATURE,
            checked_examples(examples, shared.limits.max_instances))


def _values(outputs: Dict[str, Any]) -> List[float]:
    return [float(v) for v in outputs[REGRESS_OUTPUTS].reshape(-1)]


def classify(shared: Service, model_name: str, version: Wanted,
             signature_name: str) -> None:
    """Always an error here: no babyweight signature is a classification one."""
    served = shared.acquire(model_name, version)
    try:
        _method_signature(shared, served, signature_name, CLASSIFY_METHOD, "classification")
    finally:
        shared.release(served)
    raise ApiError(400, "babyweight has no classification signature")


async def rest(shared: Service, body: Any, model_name: str, version: Wanted,
               classify_it: bool) -> Tuple[int, List[float]]:
    """A REST :regress/:classify body's answer: (version, values), or ApiError."""
    signature_name = body.get("signature_name", "") if isinstance(body, dict) else ""
    if not isinstance(signature_name, str):
        raise ApiError(400, "signature_name: expected a string")
    if classify_it:
        classify(shared, model_name, version, signature_name)
    return await regress(shared, model_name, version, signature_name, examples_from_json(body))


def checked_examples(examples: Sequence[bytes], max_instances: int) -> List[bytes]:
    payload = [{"b64": base64.b64encode(e).decode()} for e in examples]
    columns, _ = validation.example_column(payload, True, max_instances, "examples")
    return columns[validation.EXAMPLES_INPUT]


def examples_from_json(body: Any) -> List[bytes]:
    """TF Serving's REST regress/classify body ({"examples": [...], "context": {...}}) as
    serialized tf.Examples: strings -> bytes_list, whole numbers -> int64_list, other numbers
    -> float_list, a list -> several values; {"b64": ...} -> bytes."""
    from tensorflow.core.example import example_pb2

    if not isinstance(body, dict) or not isinstance(body.get("examples"), list):
        raise ApiError(400, "the request body must be a JSON object with a list 'examples' "
                       "(and optionally 'context', 'signature_name')")
    unknown = [k for k in body if k not in ("signature_name", "context", "examples")]
    if unknown:
        raise ApiError(400, f"unknown key {unknown[0]!r} in the request body; expected "
                       "'signature_name', 'context', 'examples'")
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise ApiError(400, "context: expected an object of feature values")
    result = []
    for index, given in enumerate(body["examples"]):
        if not isinstance(given, dict):
            raise ApiError(400, f"examples[{index}]: expected an object of feature values")
        example = example_pb2.Example()
        for key, value in {**context, **given}.items():
            where = f"examples[{index}].{key}"[:100]
            try:
                _set_feature(example.features.feature[key], value, where)
            except (ValueError, TypeError, UnicodeEncodeError) as error:  # binascii.Error too
                raise ApiError(400, f"{where}: {error}"[:300]) from None
        result.append(example.SerializeToString())
    return result


def _set_feature(target: Any, value: Any, where: str) -> None:
    values = value if isinstance(value, list) else [value]
    if values and all(isinstance(v, dict) and list(v) == ["b64"] and isinstance(v["b64"], str)
                      for v in values):
        target.bytes_list.value.extend(base64.b64decode(v["b64"]) for v in values)
    elif all(isinstance(v, str) for v in values):
        target.bytes_list.value.extend(v.encode() for v in values)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        if all(float(v).is_integer() and abs(v) < 2 ** 63 for v in values):
            target.int64_list.value.extend(int(v) for v in values)
        else:
            target.float_list.value.extend(float(v) for v in values)
    else:
        raise ApiError(400, f"{where}: expected strings or numbers, got {value!r}"[:200])
