"""The gRPC API's direct TensorProto reading and writing give what TensorFlow's own functions
give, and leave every other tensor to them."""
from __future__ import annotations

import types
from typing import Any, Dict, List

import numpy as np
import pytest
import tensorflow as tf

from serving import grpc_tensors
from serving.service import ApiError


def _not_utf8(index: int) -> Exception:
    return ValueError(f"value {index} is not UTF-8")


@pytest.mark.parametrize("values, dtype, shape", [
    (["True", "Unknown"], tf.string, [2]), ([26.5, 31.25], tf.float32, [2, 1]),
    ([26.5, 31.1], tf.float64, [2]), ([39, 40], tf.int32, [2]), ([39, 2 ** 40], tf.int64, [2]),
    ([True, False], tf.bool, [2])])
def test_typed_fields_read_as_tensorflow_reads_them(values, dtype, shape) -> None:
    """As a client that fills the typed field (string_val, float_val, ...) sends them."""
    proto = tf.make_tensor_proto([], dtype=dtype, shape=shape)
    field = {tf.string: "string_val", tf.float32: "float_val", tf.float64: "double_val",
             tf.int32: "int_val", tf.int64: "int64_val", tf.bool: "bool_val"}[dtype]
    getattr(proto, field).extend([v.encode() if isinstance(v, str) else v for v in values])
    expected = [v.decode() if isinstance(v, bytes) else v
                for v in tf.make_ndarray(proto).reshape(-1).tolist()]
    found = grpc_tensors.direct_values(proto, _not_utf8)
    assert found == expected and [type(v) for v in found] == [type(v) for v in expected]


def test_other_tensors_are_left_to_tensorflow() -> None:
    packed = tf.make_tensor_proto(np.array([26.0, 30.0], np.float32))  # tensor_content
    broadcast = tf.make_tensor_proto(26.0, dtype=tf.float32, shape=[3])  # one value, three rows
    matrix = tf.make_tensor_proto([[1.0, 2.0]], dtype=tf.float32)
    for proto in (packed, broadcast, matrix):
        assert grpc_tensors.direct_values(proto, _not_utf8) is None


def test_a_string_that_is_not_utf8_is_named_by_its_index() -> None:
    proto = tf.make_tensor_proto([b"ok", b"\xff"], dtype=tf.string)
    with pytest.raises(ValueError, match="value 1 is not UTF-8"):
        grpc_tensors.direct_values(proto, _not_utf8)


@pytest.mark.parametrize("array", [np.array([[7.25], [6.5]], np.float32),
                                   np.array([1.5, 2.0], np.float64),
                                   np.array([[3, 4]], np.int64), np.array([b"a"], object)])
def test_outputs_are_the_protos_tensorflow_writes(array) -> None:
    assert grpc_tensors.output_proto(array) == tf.make_tensor_proto(array)


def _payload(**inputs: Any) -> Dict[str, List[Any]]:
    return grpc_tensors.request_payload(types.SimpleNamespace(takes_examples=False), inputs)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_a_complex_tensor_is_refused_naming_its_input(dtype) -> None:
    """A client mistake (INVALID_ARGUMENT), not a failure of the server's (UNKNOWN)."""
    with pytest.raises(ApiError) as raised:
        _payload(mother_age=tf.make_tensor_proto(np.array([26 + 1j], dtype=dtype)))
    assert raised.value.status == 400
    assert str(raised.value).startswith("inputs.mother_age: expected real numbers")


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.uint8])
def test_other_real_number_tensors_still_read_as_numbers(dtype) -> None:
    proto = tf.make_tensor_proto(np.array([26], dtype=dtype.as_numpy_dtype), dtype=dtype)
    assert _payload(mother_age=proto) == {"mother_age": [26]}
