"""The exported SavedModel refuses an impossible birth itself: TF Serving, and a Vertex AI
endpoint running it, have no request validation in front of the model.

Checked on the SavedModel directly (the session's exported model, tests/serving_fixtures.py):
each prediction signature answers InvalidArgumentError naming the feature, which TF Serving
returns as INVALID_ARGUMENT (HTTP 400); the local server refuses the same requests before the
model (tests/test_serving_server.py).
"""
from __future__ import annotations

import pytest
import tensorflow as tf

from modules import contract, features
from tests.serving_fixtures import ServingModels

pytest_plugins = ("tests.serving_fixtures",)


@pytest.fixture(scope="module")
def loaded(serving_models: ServingModels):
    return tf.saved_model.load(str(serving_models.exports[1]))


def _example(**values: object) -> bytes:
    """A serialized tf.Example of the given raw features only."""
    def feature(value: object) -> tf.train.Feature:
        if isinstance(value, str):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    return tf.train.Example(features=tf.train.Features(
        feature={k: feature(v) for k, v in values.items()})).SerializeToString()


GOOD = {"is_male": features.IS_MALE_TRUE, "plurality": features.PLURALITY_NAMES[0],
        "mother_age": 26, "gestation_weeks": 39}
# (what is wrong, the raw values, the words the error must hold)
IMPOSSIBLE = [
    ("blank plurality", {**GOOD, "plurality": ""}, ["plurality must be one of", "required"]),
    ("spaces for plurality", {**GOOD, "plurality": "  "}, ["plurality must be one of"]),
    ("plurality outside the vocabulary", {**GOOD, "plurality": "Twins"},
     ["plurality must be one of", "Single(1)"]),
    ("is_male outside the vocabulary", {**GOOD, "is_male": "yes"}, ["is_male must be one of"]),
    ("age above the range", {**GOOD, "mother_age": features.MOTHER_AGE.max_value + 1},
     ["mother_age must be a number in 10..60"]),
    ("weeks below the range", {**GOOD, "gestation_weeks": features.GESTATION_WEEKS.min_value - 1},
     ["gestation_weeks must be a number in 17..47"]),
]


@pytest.mark.parametrize("values,words", [(v, w) for _, v, w in IMPOSSIBLE],
                         ids=[name for name, _, _ in IMPOSSIBLE])
def test_every_prediction_signature_refuses_an_impossible_birth(loaded, values, words) -> None:
    """TF Serving (and a Vertex AI endpoint running it) has no request validation in front of
    the model: the SavedModel itself refuses, naming the feature, in each prediction signature."""
    batch = [GOOD, values]  # one bad row fails the whole request, as TF Serving answers it
    calls = {
        contract.SERVING_DEFAULT: lambda: loaded.signatures[contract.SERVING_DEFAULT](
            **{f.name: tf.constant([row[f.name] for row in batch],
                                   tf.string if f in features.CATEGORICAL_FEATURES
                                   else tf.float32) for f in features.FEATURES}),
        contract.SERVING_TF_EXAMPLE: lambda: loaded.signatures[contract.SERVING_TF_EXAMPLE](
            examples=tf.constant([_example(**row) for row in batch])),
        "regression": lambda: loaded.signatures["regression"](
            inputs=tf.constant([_example(**row) for row in batch])),
    }
    for name, call in calls.items():
        with pytest.raises(tf.errors.InvalidArgumentError) as refused:
            call()
        for word in words:
            assert word in str(refused.value), (name, str(refused.value)[:400])
    # The good row alone is served by all three, with one prediction.
    for outputs in (loaded.signatures[contract.SERVING_TF_EXAMPLE](
                        examples=tf.constant([_example(**GOOD)])),
                    loaded.signatures["regression"](inputs=tf.constant([_example(**GOOD)]))):
        assert list(outputs.values())[0].shape == (1,)


@pytest.mark.parametrize("signature,key", [(contract.SERVING_TF_EXAMPLE, "examples"),
                                           ("regression", "inputs")])
def test_a_tf_example_without_plurality_is_refused_naming_it(loaded, signature, key) -> None:
    """Not read as 'Multiple(2+)': the feature has no default in the serving parse spec."""
    without = {k: v for k, v in GOOD.items() if k != features.PLURALITY.name}
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"Feature: plurality \(data type: string\) is required"):
        loaded.signatures[signature](**{key: tf.constant([_example(**without)])})


def test_serving_default_without_plurality_is_refused(serving_models: ServingModels,
                                                      loaded) -> None:
    """serving_default's inputs have no defaults: TF Serving names a missing one in its error."""
    signature = loaded.signatures[contract.SERVING_DEFAULT]
    _, inputs = signature.structured_input_signature
    assert features.PLURALITY.name in inputs
    request = {f.name: tf.constant([GOOD[f.name]], tf.string if f in features.CATEGORICAL_FEATURES
                                   else tf.float32)
               for f in features.FEATURES if f is not features.PLURALITY}
    with pytest.raises(TypeError, match="plurality"):
        signature(**request)
    # What TF Serving reads: the SignatureDefs in saved_model.pb, where an input with an entry
    # in `defaults` may be left out of a request. plurality has none in any signature.
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString(
        (serving_models.exports[1] / "saved_model.pb").read_bytes())
    (graph,) = proto.meta_graphs
    assert features.PLURALITY.name in graph.signature_def[contract.SERVING_DEFAULT].inputs
    for name, definition in graph.signature_def.items():
        assert features.PLURALITY.name not in definition.defaults, name


@pytest.mark.parametrize("signature,key", [(contract.SERVING_TF_EXAMPLE, "examples"),
                                           ("regression", "inputs")])
def test_a_tf_example_without_sex_is_read_as_unknown(loaded, signature, key) -> None:
    """As the local server fills it in: TF Serving has no validation in front of the model, so
    the parse spec itself carries the default, and the two servers answer the same."""
    without = {k: v for k, v in GOOD.items() if k != features.IS_MALE.name}
    unknown = {**without, features.IS_MALE.name: features.IS_MALE_UNKNOWN}
    (left_out,) = loaded.signatures[signature](**{key: tf.constant([_example(**without)])}).values()
    (given,) = loaded.signatures[signature](**{key: tf.constant([_example(**unknown)])}).values()
    # The same graph on the same parsed tensors: the same float32 bits.
    assert left_out.numpy().tolist() == given.numpy().tolist()
    # And not the value of either known sex, so the default really was 'Unknown'.
    for sex in (features.IS_MALE_TRUE, features.IS_MALE_FALSE):
        (known,) = loaded.signatures[signature](
            **{key: tf.constant([_example(**{**without, features.IS_MALE.name: sex})])}).values()
        assert known.numpy().tolist() != given.numpy().tolist(), sex
