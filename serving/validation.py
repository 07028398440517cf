"""Checks every prediction request against modules/features.py before anything reaches a model.

Why here and not in the model: TensorFlow would turn a wrong type into an opaque 500, silently
map an unknown category to the out-of-vocabulary id, and round 1e9 weeks of gestation into a
prediction. A request is therefore converted to canonical columns (the exact spellings and
types `serving_default` takes) or rejected with a RequestError naming the field, the instance
and the problem. The server, `local_predict` and `batch_predict` all use these functions, so
the three accept and refuse exactly the same inputs.

Accepted on top of the canonical spelling (the course's web app sends these):
  - JSON true/false, or the strings "true"/"false" in any case (how the warehouse spells a
    BOOL), for a feature whose vocabulary spells booleans ('True'/'False');
  - integer or float numbers (the model rounds to whole years and weeks);
  - a feature that may be absent (is_male) left out, null, or blank: its missing value.
    plurality may not: left out, null or blank is refused naming the field, since
    'Multiple(2+)' (an unknown count of several babies) must be asked for explicitly.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from modules import contract, features

DEFAULT_SIGNATURE = contract.SERVING_DEFAULT
# The input name of signatures that take serialized tf.Examples (serving_tf_example etc.).
EXAMPLES_INPUT = contract.EXAMPLES_INPUT

Value = Union[str, float]
Columns = Dict[str, List[Any]]

_BY_NAME: Dict[str, features.Feature] = {f.name: f for f in features.FEATURES}
_BODY_KEYS = ("signature_name", "instances", "inputs")


class RequestError(ValueError):
    """A client mistake: the server answers 400 with {"error": message}.

    `field` and `index` say where (a feature name, and the instance's position in the batch),
    so callers that number things differently (local_predict's file lines) can re-label it.
    """

    def __init__(self, message: str, field: Optional[str] = None,
                 index: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.index = index


def _fail(where: str, problem: str, field: Optional[str] = None,
          index: Optional[int] = None) -> RequestError:
    return RequestError(f"{where}: {problem}" if where else problem, field=field, index=index)


def _boolean_spellings(feature: features.CategoricalFeature) -> Optional[Dict[bool, str]]:
    """JSON true/false -> the vocabulary's spelling, for vocabularies that spell booleans."""
    if {features.IS_MALE_TRUE, features.IS_MALE_FALSE} <= set(feature.vocabulary):
        return {True: features.IS_MALE_TRUE, False: features.IS_MALE_FALSE}
    return None


_BOOLEANS = {f.name: _boolean_spellings(f) for f in features.CATEGORICAL_FEATURES}
# The warehouse's spellings of a BOOL (BigQuery's and DuckDB's CAST of 'true'/'false').
_BOOLEAN_WORDS = {"true": True, "false": False}
_VOCABULARIES = {f.name: frozenset(f.vocabulary) for f in features.CATEGORICAL_FEATURES}


def _quote(value: Any, limit: int = 60) -> str:
    """repr() cut short: an error message must not echo a megabyte of the request back."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _describe(value: Any) -> str:
    kind = {dict: "object", list: "list", str: "string", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)
    try:  # any value: a gRPC tensor's values need not be ones JSON can spell
        text = json.dumps(value) if kind != "object" else "{...}"
    except (TypeError, ValueError, RecursionError):
        text = _quote(value)
    return f"{kind} {text[:60]}"


def canonical_categorical(feature: features.CategoricalFeature, value: Any, where: str,
                          index: Optional[int] = None) -> str:
    """The vocabulary spelling for `value`, or RequestError."""
    booleans = _BOOLEANS[feature.name]
    if isinstance(value, str):
        if value in _VOCABULARIES[feature.name]:
            return value
        if not value.strip() and not feature.required:
            return str(feature.missing_value)
        if booleans and value.strip().lower() in _BOOLEAN_WORDS:
            return booleans[_BOOLEAN_WORDS[value.strip().lower()]]
    elif isinstance(value, bool) and booleans:
        return booleans[value]
    elif value is None and not feature.required:
        return str(feature.missing_value)
    allowed = ", ".join(repr(v) for v in feature.vocabulary)
    if booleans:
        allowed += ", true/false"
    if not feature.required:
        allowed += f" (leave it out, null or '' for {feature.missing_value!r})"
    if value is None or (isinstance(value, str) and not value.strip()):
        problem = f"is required; one of {allowed}"
    elif isinstance(value, str):
        problem = f"{_quote(value)} is not in the vocabulary; one of {allowed}"
    else:
        problem = f"expected a string, got {_describe(value)}; one of {allowed}"
    raise _fail(where, problem, feature.name, index)


def canonical_numeric(feature: features.NumericFeature, value: Any, where: str,
                      index: Optional[int] = None) -> float:
    """`value` as a float inside the declared range, or RequestError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problem = ("is required" if value is None else f"expected a number, got {_describe(value)}")
        raise _fail(where, f"{problem} (a number in {feature.min_value}..{feature.max_value})",
                    feature.name, index)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _fail(where, f"{value!r} is not a finite number", feature.name, index)
    if not feature.min_value <= number <= feature.max_value:
        raise _fail(where, f"{value!r} is outside the valid range "
                    f"{feature.min_value}..{feature.max_value}", feature.name, index)
    return number


def canonical_value(feature: features.Feature, value: Any, where: str,
                    index: Optional[int] = None) -> Value:
    if isinstance(feature, features.CategoricalFeature):
        return canonical_categorical(feature, value, where, index)
    return canonical_numeric(feature, value, where, index)


def _check_batch_size(rows: int, max_instances: int, where: str) -> None:
    if rows == 0:
        raise _fail(where, "empty batch: send at least one instance")
    if rows > max_instances:
        raise _fail(where, f"{rows} instances is more than the limit of {max_instances} "
                    "per request; split the batch")


def _unknown_key(key: str, where: str, index: Optional[int] = None) -> RequestError:
    return _fail(where, f"unknown feature {_quote(key)}; declared features: "
                 f"{', '.join(features.FEATURE_NAMES)}", key, index)


def feature_columns_from_instances(instances: Any, max_instances: int) -> Tuple[Columns, int]:
    """Row format (`instances`: a list of objects, one per example) -> canonical columns."""
    if not isinstance(instances, list):
        raise _fail("instances", f"expected a list of objects, got {_describe(instances)}")
    _check_batch_size(len(instances), max_instances, "instances")
    columns: Columns = {name: [] for name in features.FEATURE_NAMES}
    for index, instance in enumerate(instances):
        where = f"instances[{index}]"
        if not isinstance(instance, dict):
            raise _fail(where, "expected an object of feature values "
                        f"({', '.join(features.FEATURE_NAMES)}), got {_describe(instance)}",
                        index=index)
        for key in instance:
            if key not in _BY_NAME:
                raise _unknown_key(key, where, index)
        for feature in features.FEATURES:
            value = instance.get(feature.name)
            if value is None and feature.required and feature.name not in instance:
                raise _fail(where, f"missing required feature {feature.name!r}",
                            feature.name, index)
            columns[feature.name].append(
                canonical_value(feature, value, f"{where}.{feature.name}", index))
    return columns, len(instances)


def feature_columns_from_inputs(inputs: Any, max_instances: int) -> Tuple[Columns, int]:
    """Columnar format (`inputs`: an object of equally long lists) -> canonical columns."""
    if not isinstance(inputs, dict):
        raise _fail("inputs", "expected an object mapping each feature to a list of values, "
                    f"got {_describe(inputs)}")
    for key in inputs:
        if key not in _BY_NAME:
            raise _unknown_key(key, "inputs")
    rows: Optional[int] = None
    for name, values in inputs.items():
        if not isinstance(values, list):
            raise _fail(f"inputs.{name}", f"expected a list of values, got {_describe(values)}",
                        name)
        if rows is None:
            rows = len(values)
        elif len(values) != rows:
            raise _fail(f"inputs.{name}", f"has {len(values)} values but the other inputs have "
                        f"{rows}; every input needs one value per instance", name)
    if rows is None:
        missing = [f.name for f in features.FEATURES if f.required]
        raise _fail("inputs", f"missing required feature {missing[0]!r}", missing[0])
    _check_batch_size(rows, max_instances, "inputs")
    columns: Columns = {}
    for feature in features.FEATURES:
        if feature.name not in inputs:
            if feature.required:
                raise _fail("inputs", f"missing required feature {feature.name!r}",
                            feature.name)
            columns[feature.name] = [canonical_value(feature, None, "")] * rows
            continue
        columns[feature.name] = [
            canonical_value(feature, value, f"inputs.{feature.name}[{index}]", index)
            for index, value in enumerate(inputs[feature.name])]
    return columns, rows


# ------------------------------------------------------------------------------------------------
# Serialized tf.Examples (signatures whose one input is `examples`)
# ------------------------------------------------------------------------------------------------

def canonical_example(value: Any, where: str, index: Optional[int] = None) -> bytes:
    """A {"b64": ...} tf.Example, checked like a JSON instance; optional features filled in.

    Numeric features must be int64_list, as the raw schema stores them; other features in the
    example (the label, the split key) are ignored by the signature and left alone.
    """
    from tensorflow.core.example import example_pb2  # TensorFlow only for this format
    from google.protobuf.message import DecodeError

    if not (isinstance(value, dict) and list(value) == ["b64"] and isinstance(value["b64"], str)):
        raise _fail(where, 'expected {"b64": <base64 of a serialized tf.Example>}, '
                    f"got {_describe(value)}", EXAMPLES_INPUT, index)
    try:
        example = example_pb2.Example.FromString(base64.b64decode(value["b64"], validate=True))
    except (binascii.Error, ValueError, DecodeError) as error:
        raise _fail(where, f"not a base64 serialized tf.Example ({error})", EXAMPLES_INPUT,
                    index) from None
    feature_map = example.features.feature
    for feature in features.FEATURES:
        name, field = feature.name, f"{where}.{feature.name}"
        if name not in feature_map:
            if feature.required:
                raise _fail(where, f"missing required feature {name!r}", name, index)
            feature_map[name].bytes_list.value.append(feature.missing_value.encode())
            continue
        proto = feature_map[name]
        kind = proto.WhichOneof("kind")
        if isinstance(feature, features.CategoricalFeature):
            values = list(proto.bytes_list.value)
            if kind != "bytes_list" or len(values) != 1:
                raise _fail(field, "expected a bytes_list of one value", name, index)
            try:
                text = values[0].decode("utf-8")
            except UnicodeDecodeError:
                raise _fail(field, "is not UTF-8 text", name, index) from None
            canonical = canonical_categorical(feature, text, field, index)
            proto.bytes_list.value[0] = canonical.encode()
        else:
            numbers = list(proto.int64_list.value)
            if kind != "int64_list" or len(numbers) != 1:
                raise _fail(field, "expected an int64_list of one value (the schema's type)",
                            name, index)
            canonical_numeric(feature, numbers[0], field, index)
    return example.SerializeToString(deterministic=True)


def example_column(payload: Any, row_format: bool, max_instances: int,
                   key: Optional[str] = None) -> Tuple[Columns, int]:
    """`instances`/`inputs` for an `examples` signature -> {"examples": [serialized, ...]}.

    Accepts TF Serving's two spellings for a single named input: the values themselves, or
    objects/maps keyed by the input name. Messages name `key`, by default the :predict body's
    field (a :regress body's is `examples`).
    """
    key = key or ("instances" if row_format else "inputs")
    values = payload
    if row_format and isinstance(payload, list):
        values = [v[EXAMPLES_INPUT] if isinstance(v, dict) and list(v) == [EXAMPLES_INPUT]
                  else v for v in payload]
    elif not row_format and isinstance(payload, dict) and list(payload) == [EXAMPLES_INPUT]:
        values, key = payload[EXAMPLES_INPUT], f"inputs.{EXAMPLES_INPUT}"
    if not isinstance(values, list):
        raise _fail(key, f"expected a list of {{\"b64\": ...}} tf.Examples, got "
                    f"{_describe(values)}")
    _check_batch_size(len(values), max_instances, key)
    return {EXAMPLES_INPUT: [canonical_example(v, f"{key}[{i}]", i)
                             for i, v in enumerate(values)]}, len(values)


# ------------------------------------------------------------------------------------------------
# The request body
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PredictBody:
    """A :predict body's envelope: which signature, which format, and the unchecked payload."""

    signature_name: str
    row_format: bool
    payload: Any


class DuplicateKey(ValueError):
    """A JSON object that names a key twice."""


def unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """json.loads' object_pairs_hook: an object naming a key twice is refused. Python keeps
    the last value; TF Serving (tensorflow_serving/util/json_tensor.cc) finds the first of a
    body's keys, and appends both values of an instance's key to its tensor: the same request
    would be answered otherwise here than there, and no answer is what the client meant."""
    found = dict(pairs)
    if len(found) != len(pairs):
        raise DuplicateKey(f"the key {first_repeated(k for k, _ in pairs)!r} appears twice in "
                           "one object")
    return found


def first_repeated(names: Iterable[str]) -> Optional[str]:
    """The first name given a second time, else None."""
    seen: set = set()
    return next((name for name in names if name in seen or seen.add(name)), None)


def loads(text: Union[str, bytes]) -> Any:
    """json.loads, refusing an object that names a key twice (unique_keys)."""
    value = json.loads(text)
    if _keys_all_kept(text, value):
        return value
    return json.loads(text, object_pairs_hook=unique_keys)


def _keys_all_kept(text: Union[str, bytes], value: Any) -> bool:
    """Whether `value`, parsed from `text` by plain json.loads, is known to hold every key of
    `text`, so that none was named twice: every key is followed by a colon, so when `text`
    has no more colons than `value` has keys, no key was lost. Counted for the usual shapes
    (a row-format body, a columnar one, one flat object: a line of a JSON-lines file); any
    other, or a colon inside a string, is left to the exact parse. Why not always the exact
    parse: its hook runs Python once per object, a large share of the parse of a request of
    many rows."""
    if not isinstance(value, dict):
        return False
    rows, columns = value.get("instances"), value.get("inputs")
    if isinstance(rows, list) and all(type(row) is dict for row in rows):
        keys = len(value) + sum(map(len, rows))
    elif isinstance(columns, dict):
        keys = len(value) + len(columns)
    else:
        keys = len(value)
    return text.count(":" if isinstance(text, str) else b":") == keys


def parse_json(raw: bytes) -> Any:
    """The body as JSON; NaN/Infinity tokens parse (TF Serving accepts them) and fail later.
    An object that names a key twice is refused (unique_keys)."""
    try:
        return loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise RequestError(f"malformed JSON body: {error}") from None
    except RecursionError:
        raise RequestError("malformed JSON body: nested too deeply") from None


def parse_predict_body(body: Any) -> PredictBody:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object with 'instances' (row "
                           "format) or 'inputs' (columnar format), got " + _describe(body))
    unknown = [key for key in body if key not in _BODY_KEYS]
    if unknown:
        raise RequestError(f"unknown key {_quote(unknown[0])} in the request body; "
                           f"expected {', '.join(repr(k) for k in _BODY_KEYS)}", field=unknown[0])
    if ("instances" in body) == ("inputs" in body):
        raise RequestError("the request body needs exactly one of 'instances' (row format) "
                           "and 'inputs' (columnar format)")
    signature = body.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(signature, str):
        raise RequestError(f"signature_name: expected a string, got {_describe(signature)}",
                           field="signature_name")
    row_format = "instances" in body
    return PredictBody(signature or DEFAULT_SIGNATURE, row_format,
                       body["instances" if row_format else "inputs"])


def feature_columns(body: PredictBody, max_instances: int) -> Tuple[Columns, int]:
    if body.row_format:
        return feature_columns_from_instances(body.payload, max_instances)
    return feature_columns_from_inputs(body.payload, max_instances)


def sample_instance() -> Dict[str, Value]:
    """A valid instance built from the declaration: warm-up requests and documentation."""
    instance: Dict[str, Value] = {f.name: f.vocabulary[0] for f in features.CATEGORICAL_FEATURES}
    instance.update({f.name: float(round((f.min_value + f.max_value) / 2))
                     for f in features.NUMERIC_FEATURES})
    return instance
