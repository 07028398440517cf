"""serving.validation: what a prediction request may contain, read from modules/features.py.

Pure-Python checks (no model, no server): every value here comes from the declaration, so the
tests follow it when a vocabulary or range changes.
"""
from __future__ import annotations

import base64
import json
import math
from typing import Any, Callable, Dict

import pytest

from modules import features
from serving import validation
from serving.validation import RequestError

AGE, WEEKS = features.MOTHER_AGE, features.GESTATION_WEEKS
SEX, PLURALITY = features.IS_MALE, features.PLURALITY
LIMIT = 50


def canonical() -> Dict[str, Any]:
    return {SEX.name: features.IS_MALE_TRUE, PLURALITY.name: features.PLURALITY_NAMES[0],
            AGE.name: 26.0, WEEKS.name: 39.0}


def columns(*instances: Dict[str, Any]) -> validation.Columns:
    result, rows = validation.feature_columns_from_instances(list(instances), LIMIT)
    assert rows == len(instances)
    return result


def test_canonical_instance_passes_unchanged() -> None:
    assert columns(canonical()) == {k: [v] for k, v in canonical().items()}


def test_course_payload_and_json_booleans_equal_the_canonical_spelling() -> None:
    course = {SEX.name: features.IS_MALE_TRUE, AGE.name: 26.0,
              PLURALITY.name: features.PLURALITY_NAMES[0], WEEKS.name: 39}
    boolean = {**course, SEX.name: True, AGE.name: 26}
    assert columns(course) == columns(boolean) == columns(canonical())
    girl = columns({**canonical(), SEX.name: False})
    assert girl[SEX.name] == [features.IS_MALE_FALSE]


# The four ways a request can leave a value out: the key missing, null, empty or blank.
ABSENT = pytest.mark.parametrize("absent", [
    lambda i, name: i.pop(name),
    lambda i, name: i.__setitem__(name, None),
    lambda i, name: i.__setitem__(name, ""),
    lambda i, name: i.__setitem__(name, "  "),
], ids=["left-out", "null", "empty", "blank"])


@ABSENT
def test_optional_features_fall_back_to_their_missing_value(
        absent: Callable[[Dict[str, Any], str], None]) -> None:
    optional = [f for f in features.CATEGORICAL_FEATURES if not f.required]
    assert optional, "the declaration has no feature a request may leave out"
    instance = canonical()
    for feature in optional:
        absent(instance, feature.name)
    result = columns(instance)
    for feature in optional:
        assert feature.missing_value is not None
        assert result[feature.name] == [feature.missing_value]


@ABSENT
def test_a_missing_plurality_is_refused_not_read_as_multiple(
        absent: Callable[[Dict[str, Any], str], None]) -> None:
    """Left out, plurality used to mean 'Multiple(2+)': a twin's weight for a single birth."""
    assert PLURALITY.required and PLURALITY.missing_value == features.PLURALITY_MULTIPLE_UNKNOWN
    instance = canonical()
    absent(instance, PLURALITY.name)
    with pytest.raises(RequestError) as caught:
        columns(canonical(), instance)
    assert (caught.value.field, caught.value.index) == (PLURALITY.name, 1)
    assert "instances[1]" in caught.value.message and "required" in caught.value.message
    # The unknown count of several babies is still there, asked for by name.
    explicit = columns({**canonical(), PLURALITY.name: features.PLURALITY_MULTIPLE_UNKNOWN})
    assert explicit[PLURALITY.name] == [features.PLURALITY_MULTIPLE_UNKNOWN]
    inputs = {name: [value] for name, value in canonical().items() if name != PLURALITY.name}
    with pytest.raises(RequestError, match=f"missing required feature '{PLURALITY.name}'"):
        validation.feature_columns_from_inputs(inputs, LIMIT)


@pytest.mark.parametrize("spelling,expected", [
    ("true", features.IS_MALE_TRUE), ("TRUE", features.IS_MALE_TRUE),
    (" True ", features.IS_MALE_TRUE), ("false", features.IS_MALE_FALSE),
    ("False", features.IS_MALE_FALSE), ("fAlSe", features.IS_MALE_FALSE),
])
def test_is_male_accepts_the_warehouse_spelling_in_any_case(spelling: str,
                                                              expected: str) -> None:
    assert columns({**canonical(), SEX.name: spelling})[SEX.name] == [expected]


BAD_VALUES = [
    # (feature, value, words the message must contain)
    (AGE.name, None, "is required"),
    (AGE.name, "26", "expected a number"),
    (AGE.name, True, "expected a number"),
    (AGE.name, [26], "expected a number"),
    (AGE.name, {"years": 26}, "expected a number"),
    (AGE.name, 26 + 1j, "expected a number"),  # no JSON, but a gRPC tensor's value may be
    (AGE.name, AGE.max_value + 1, f"outside the valid range {AGE.min_value}..{AGE.max_value}"),
    (WEEKS.name, WEEKS.min_value - 0.5, "outside the valid range"),
    (WEEKS.name, float("nan"), "not a finite number"),
    (WEEKS.name, float("inf"), "not a finite number"),
    (WEEKS.name, 10 ** 400, "not a finite number"),
    (PLURALITY.name, "Twins", "not in the vocabulary"),
    (PLURALITY.name, 2, "expected a string"),
    (PLURALITY.name, True, "expected a string"),  # plurality's vocabulary spells no booleans
    (SEX.name, "yes", "not in the vocabulary"),
    (SEX.name, "t", "not in the vocabulary"),
    (SEX.name, {"b64": "x"}, "expected a string"),
]


@pytest.mark.parametrize("name,value,words", BAD_VALUES,
                         ids=[f"{n}={v!r}"[:40] for n, v, _ in BAD_VALUES])
def test_bad_values_are_refused_naming_field_and_instance(name: str, value: Any,
                                                          words: str) -> None:
    instance = {**canonical(), name: value}
    with pytest.raises(RequestError) as caught:
        columns(canonical(), instance)
    error = caught.value
    assert f"instances[1].{name}" in error.message and words in error.message, error.message
    assert (error.field, error.index) == (name, 1)


def test_missing_required_and_unknown_features_are_named() -> None:
    for feature in features.FEATURES:
        if feature.required:
            instance = canonical()
            del instance[feature.name]
            with pytest.raises(RequestError, match=rf"instances\[0\]: missing required "
                               rf"feature '{feature.name}'"):
                columns(instance)
    with pytest.raises(RequestError, match=r"instances\[0\]: unknown feature 'mother_agee'"):
        columns({**canonical(), "mother_agee": 26})


@pytest.mark.parametrize("instances,words", [
    ([], "empty batch"),
    ([canonical()] * (LIMIT + 1), f"more than the limit of {LIMIT}"),
    ({"mother_age": 26}, "expected a list of objects"),
    ([[26, 39]], "expected an object"),
])
def test_batch_shape_is_checked(instances: Any, words: str) -> None:
    with pytest.raises(RequestError, match=words):
        validation.feature_columns_from_instances(instances, LIMIT)


def test_columnar_format_matches_row_format() -> None:
    rows = [canonical(), {**canonical(), SEX.name: False, AGE.name: 40}]
    inputs = {name: [r[name] for r in rows] for name in canonical()}
    assert validation.feature_columns_from_inputs(inputs, LIMIT) == (columns(*rows), 2)
    del inputs[SEX.name]
    result, _ = validation.feature_columns_from_inputs(inputs, LIMIT)
    assert result[SEX.name] == [SEX.missing_value] * 2


@pytest.mark.parametrize("change,words", [
    (lambda i: i.update({AGE.name: [26.0]}), f"inputs.{AGE.name}: has 1 values"),
    (lambda i: i.pop(WEEKS.name), f"missing required feature '{WEEKS.name}'"),
    (lambda i: i.update(foo=[1, 2]), "unknown feature 'foo'"),
    (lambda i: i.update({AGE.name: 26}), f"inputs.{AGE.name}: expected a list"),
    (lambda i: i.update({AGE.name: [26, 99]}), rf"inputs.{AGE.name}\[1\]: 99 is outside"),
    (lambda i: [i.__setitem__(k, []) for k in list(i)], "empty batch"),
])
def test_columnar_errors_name_the_input(change: Callable[[Dict[str, Any]], Any],
                                        words: str) -> None:
    inputs = {name: [value, value] for name, value in canonical().items()}
    change(inputs)
    with pytest.raises(RequestError, match=words):
        validation.feature_columns_from_inputs(inputs, LIMIT)


@pytest.mark.parametrize("raw,words", [
    (b'{"instances": [', "malformed JSON"),
    (b"\xff\xfe", "malformed JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"instances": [], "inputs": {}}', "exactly one of"),
    (b'{"signature_name": "serving_default"}', "exactly one of"),
    (b'{"instance": []}', "unknown key 'instance'"),
    (b'{"instances": [], "signature_name": 3}', "signature_name: expected a string"),
])
def test_body_envelope_errors(raw: bytes, words: str) -> None:
    with pytest.raises(RequestError, match=words):
        validation.parse_predict_body(validation.parse_json(raw))


_ROW = '"is_male": "True", "plurality": "Single(1)", "mother_age": 26, "gestation_weeks": 39'


@pytest.mark.parametrize("raw", [
    # In a flat instance, compact or spaced (the fast check), and where the exact parse runs:
    # a nested object, a space before the colon, the columnar format, the envelope.
    '{"instances": [{%s}, {%s, "mother_age": 40}]}' % (_ROW, _ROW),
    '{"instances":[{"mother_age":26,"mother_age":26}]}',
    '{"instances": [{%s, "mother_age" : 40}]}' % _ROW,
    '{"signature_name": "serving_tf_example", "instances": [{"b64": "AA==", "b64": "AA=="}]}',
    '{"inputs": {"mother_age": [26], "mother_age": [40]}}',
    '{"instances": [{%s}], "instances": []}' % _ROW,
])
def test_a_key_named_twice_in_one_object_is_refused_naming_it(raw: str) -> None:
    with pytest.raises(RequestError, match=r"malformed JSON body: the key '\w+' appears twice"):
        validation.parse_json(raw.encode())


@pytest.mark.parametrize("value", [
    '{"instances": [{%s, "key": "a\\":b {c"}]}' % _ROW,  # '":' and '{' inside a string
    '{"instances": [{%s}, {%s}]}' % (_ROW, _ROW),
    '{"inputs": {"mother_age": [26, 27]}}',
    '{"signature_name": "serving_tf_example", "instances": [{"b64": "AA=="}, {"b64": "AA=="}]}',
])
def test_bodies_without_a_repeated_key_parse_as_plain_json(value: str) -> None:
    assert validation.parse_json(value.encode()) == json.loads(value)


def test_a_json_lines_record_naming_a_key_twice_is_a_rejection() -> None:
    from serving import instances

    lines = ['{%s}' % _ROW, '{%s, "plurality": "Twins(2)"}' % _ROW]
    (_, first), (_, second) = instances.json_records(lines)
    assert first == json.loads(lines[0])
    assert isinstance(second, RequestError) and "'plurality' appears twice" in str(second)


def test_nan_tokens_parse_then_fail_as_non_finite() -> None:
    body = validation.parse_predict_body(validation.parse_json(
        b'{"instances": [{"is_male": "True", "plurality": "Single(1)", "mother_age": NaN, '
        b'"gestation_weeks": 39}]}'))
    with pytest.raises(RequestError, match=r"instances\[0\].mother_age: nan is not a finite"):
        validation.feature_columns(body, LIMIT)
    assert body.signature_name == validation.DEFAULT_SIGNATURE and body.row_format


def test_sample_instance_is_valid() -> None:
    result = columns(validation.sample_instance())
    assert all(math.isfinite(v[0]) for k, v in result.items() if k in (AGE.name, WEEKS.name))


# ------------------------------------------------------------------------------------------------
# Serialized tf.Examples
# ------------------------------------------------------------------------------------------------

def _example(**values: Any) -> Dict[str, str]:
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    for name, value in values.items():
        feature = example.features.feature[name]
        if isinstance(value, str):
            feature.bytes_list.value.append(value.encode())
        elif isinstance(value, float):
            feature.float_list.value.append(value)
        else:
            feature.int64_list.value.append(value)
    return {"b64": base64.b64encode(example.SerializeToString()).decode()}


def test_examples_are_checked_and_optional_features_filled() -> None:
    from tensorflow.core.example import example_pb2

    good = _example(**{AGE.name: 26, WEEKS.name: 39, PLURALITY.name: "Twins(2)",
                       features.LABEL_KEY: 7.5})
    result, rows = validation.example_column([good], True, LIMIT)
    parsed = example_pb2.Example.FromString(result[validation.EXAMPLES_INPUT][0])
    assert rows == 1
    assert parsed.features.feature[SEX.name].bytes_list.value == [SEX.missing_value.encode()]
    assert parsed.features.feature[features.LABEL_KEY].float_list.value == [7.5]
    same, _ = validation.example_column({validation.EXAMPLES_INPUT: [good]}, False, LIMIT)
    assert same == result

    for bad, words in [
        (_example(**{WEEKS.name: 39, PLURALITY.name: "Twins(2)"}),
         f"missing required feature '{AGE.name}'"),
        (_example(**{AGE.name: 26, WEEKS.name: 39}),
         f"missing required feature '{PLURALITY.name}'"),
        (_example(**{AGE.name: 26.0, WEEKS.name: 39, PLURALITY.name: "Twins(2)"}),
         "expected an int64_list"),
        (_example(**{AGE.name: 99, WEEKS.name: 39, PLURALITY.name: "Twins(2)"}),
         "outside the valid range"),
        (_example(**{AGE.name: 26, WEEKS.name: 39, SEX.name: "yes"}), "not in the vocabulary"),
        ({"b64": "not base64!"}, "not a base64 serialized tf.Example"),
        ("plain string", 'expected {"b64"'),
    ]:
        with pytest.raises(RequestError, match=words):
            validation.example_column([good, bad], True, LIMIT)


def test_error_messages_do_not_echo_huge_values() -> None:
    huge = "x" * 100_000
    for instance in ({**canonical(), PLURALITY.name: huge}, {**canonical(), huge: 1}):
        with pytest.raises(RequestError) as caught:
            columns(instance)
        assert len(caught.value.message) < 500
