"""TensorProtos of the gRPC API <-> Python values, without tf.make_ndarray/make_tensor_proto
where the tensor is the common case; a Predict's inputs as the payload REST would have got.

Why: those two general functions cost a single-row gRPC Predict more server time than the
transport does. A request tensor of shape [N] or [N, 1] whose values sit in the typed field
(string_val, float_val, ...) is read directly; a numeric output array is written as TF's own
`tensor_content` (the bytes tf.make_tensor_proto writes for it). Anything else goes through
TensorFlow's functions, so every TensorProto TF Serving accepts is still read the same way.
"""
from __future__ import annotations

import base64
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2

from modules import features
from serving import validation
from serving.service import ApiError

_DECLARED = frozenset(features.FEATURE_NAMES)

# dtype -> (the typed field holding its values, the Python type a value becomes)
_FIELDS: Dict[int, Any] = {
    types_pb2.DT_FLOAT: ("float_val", float), types_pb2.DT_DOUBLE: ("double_val", float),
    types_pb2.DT_INT32: ("int_val", int), types_pb2.DT_INT64: ("int64_val", int),
    types_pb2.DT_BOOL: ("bool_val", bool),
}
_OUTPUT_DTYPES = {np.dtype(np.float32): types_pb2.DT_FLOAT,
                  np.dtype(np.float64): types_pb2.DT_DOUBLE,
                  np.dtype(np.int32): types_pb2.DT_INT32, np.dtype(np.int64): types_pb2.DT_INT64}


def direct_values(proto: tensor_pb2.TensorProto,
                  not_utf8: Callable[[int], Exception]) -> Optional[List[Any]]:
    """The values of a [N] or [N, 1] tensor held in its typed field, or None (not that case).

    Strings are decoded as UTF-8; `not_utf8(index)` is raised for one that is not. Reads the
    shape by index rather than iterating it: on the request path of every gRPC Predict.
    """
    shape = proto.tensor_shape
    dims = shape.dim
    rank = len(dims)
    if not (rank == 1 or (rank == 2 and dims[1].size == 1)) or proto.tensor_content \
            or shape.unknown_rank:
        return None
    rows = dims[0].size
    if proto.dtype == types_pb2.DT_STRING:
        raw = proto.string_val[:]  # a list: iterating the field itself is far slower
        if len(raw) != rows:
            return None
        values = []
        for index, value in enumerate(raw):
            try:
                values.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                raise not_utf8(index) from None
        return values
    field = _FIELDS.get(proto.dtype)
    if field is None:
        return None
    raw = getattr(proto, field[0])[:]
    if len(raw) != rows:
        return None  # e.g. one value broadcast to the shape: TensorFlow's reading applies
    return [field[1](v) for v in raw]


def output_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A model output as a TensorProto, as tf.make_tensor_proto writes a numeric array."""
    proto = tensor_pb2.TensorProto()
    fill_output(proto, array)
    return proto


def fill_output(proto: tensor_pb2.TensorProto, array: np.ndarray) -> None:
    """Writes `output_proto(array)` into an empty TensorProto in place (a response's map
    entry), without building a second one to copy."""
    dtype = _OUTPUT_DTYPES.get(array.dtype)
    if dtype is None:
        import tensorflow as tf

        proto.CopyFrom(tf.make_tensor_proto(array))
        return
    proto.dtype = dtype
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add().size = size
    proto.tensor_content = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"),
                                                              copy=False).tobytes()


def _tensor_values(name: str, proto: Any) -> List[Any]:
    """A request tensor as a list of Python values, one per instance (1-D, or [N, 1])."""
    direct = direct_values(proto, lambda index: ApiError(
        400, f"inputs.{name}[{index}]: is not UTF-8 text"))
    if direct is not None:
        return direct
    try:
        array = _make_ndarray(proto)
    except (TypeError, ValueError) as error:
        raise ApiError(400, f"inputs.{name}: not a valid TensorProto ({error})") from None
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ApiError(400, f"inputs.{name}: expected a tensor of shape [batch] (one value "
                       f"per instance), got shape {list(array.shape)}")
    if array.dtype == object:
        values = []
        for index, value in enumerate(_strings(array)):
            try:
                values.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                raise ApiError(400, f"inputs.{name}[{index}]: is not UTF-8 text") from None
        return values
    if array.dtype == np.bool_:
        return [bool(v) for v in array]
    if array.dtype.kind == "c":  # no feature is a complex number, and REST cannot send one
        raise ApiError(400, f"inputs.{name}: expected real numbers or strings, got a "
                       f"{array.dtype.name} tensor")
    return [v.item() for v in array]


def request_payload(found: Any, inputs: Any) -> Dict[str, List[Any]]:
    """gRPC inputs -> the columnar JSON payload REST would have got (same checks, messages)."""
    if found.takes_examples:
        examples = inputs.get(validation.EXAMPLES_INPUT)
        if examples is None or len(inputs) != 1:
            raise ApiError(400, f"inputs: expected exactly one input "
                           f"{validation.EXAMPLES_INPUT!r} of serialized tf.Examples")
        try:
            array = _make_ndarray(examples).reshape(-1)
        except (TypeError, ValueError) as error:
            raise ApiError(400, f"inputs.examples: not a valid TensorProto ({error})") from None
        if array.dtype != object:
            raise ApiError(400, "inputs.examples: expected a string tensor of serialized "
                           "tf.Examples")
        return {validation.EXAMPLES_INPUT: [{"b64": base64.b64encode(v).decode()}
                                            for v in _strings(array)]}
    # A protobuf map has no order: the declaration's order makes the first error reported
    # the one REST reports for the same columns sent in that order (names the declaration
    # does not have after its own, sorted). Iterating the map is its slow part: only then.
    names = [name for name in features.FEATURE_NAMES if name in inputs]
    if len(names) != len(inputs):
        names += sorted(name for name in inputs if name not in _DECLARED)
    return {name: _tensor_values(name, inputs[name]) for name in names}


def _strings(array: np.ndarray) -> List[bytes]:
    """A string array's values as bytes: tf.make_ndarray reads a string tensor sent without
    values as empty strings (as TensorFlow does) but gives those as str, the rest as bytes."""
    return [v.encode() if isinstance(v, str) else v for v in array.tolist()]


def _make_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    import tensorflow as tf

    return tf.make_ndarray(proto)
