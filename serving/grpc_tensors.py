"""TensorProtos of the gRPC API <-> Python values, without tf.make_ndarray/make_tensor_proto
where the tensor is the common case.

Why: those two general functions cost a single-row gRPC Predict more server time than the
transport does. A request tensor of shape [N] or [N, 1] whose values sit in the typed field
(string_val, float_val, ...) is read directly; a numeric output array is written as TF's own
`tensor_content` (the bytes tf.make_tensor_proto writes for it). Anything else goes through
TensorFlow's functions, so every TensorProto TF Serving accepts is still read the same way.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2

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
