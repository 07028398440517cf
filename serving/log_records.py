"""The request log's records: one serialized tf.Example per predicted row, in the wire format.

Why hand-written: building tf.train.Example messages costs the writer thread many times as much
CPU, and that thread shares the interpreter (the GIL) with the requests. Most of a record
repeats from one row to the next (categorical values, whole-number ages and weeks, the
version), so each distinct entry is encoded once and cached; a row is a join of cached pieces,
the prediction's four bytes and the request's time. The bytes are the ones tf.train.Example
would write (tests/test_request_log.py parses them back).
"""
from __future__ import annotations

import functools
import struct
from typing import Any, List, Mapping, Sequence, Tuple

from modules import features

PREDICTION_KEY = "predicted_" + features.LABEL_KEY
VERSION_KEY = "model_version"
TIME_KEY = "request_time_ms"
RECORD_KEYS = (*features.FEATURE_NAMES, PREDICTION_KEY, VERSION_KEY, TIME_KEY)

_BYTES, _FLOATS, _INTS = 0x0A, 0x12, 0x1A  # Feature's bytes_list, float_list, int64_list
# (name, categorical?, the declared missing value) in declaration order.
_DECLARED: Tuple[Tuple[str, bool, str], ...] = tuple(
    (f.name, isinstance(f, features.CategoricalFeature),
     getattr(f, "missing_value", None) or "") for f in features.FEATURES)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 as protobuf writes it: two's complement, ten bytes if < 0
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def _entry(name: str, kind: int, payload: bytes) -> bytes:
    """One entry of tf.Example's feature map: key, and a Feature holding one list."""
    feature = _field(kind, _field(0x0A, payload))
    return _field(0x0A, _field(0x0A, name.encode()) + _field(0x12, feature))


@functools.lru_cache(maxsize=4096)
def _string_entry(name: str, value: Any, missing: str) -> bytes:
    """Categorical values repeat (their vocabulary is small): each entry is encoded once.

    A blank value is the declared missing value, the spelling the Transform reads.
    """
    if value in (None, "", b""):
        value = missing
    return _entry(name, _BYTES, value.encode() if isinstance(value, str) else bytes(value))


@functools.lru_cache(maxsize=4096)
def _int_entry(name: str, value: int) -> bytes:
    return _entry(name, _INTS, _varint(value))


# The prediction's entry is a fixed prefix and the float's four little-endian bytes.
_PREDICTION_PREFIX = _entry(PREDICTION_KEY, _FLOATS, b"\0\0\0\0")[:-4]
_FLOAT = struct.Struct("<f")


def _row_entries(values: Sequence[Any]) -> bytes:
    """The features' entries of one row (`values` in declaration order)."""
    parts = []
    for (name, categorical, missing), value in zip(_DECLARED, values):
        if categorical:
            parts.append(_string_entry(name, value, missing))
        else:
            parts.append(_int_entry(name, int(round(float(value)))))
    return b"".join(parts)


def _record(row: bytes, prediction: float, tail: bytes) -> bytes:
    body = row + _PREDICTION_PREFIX + _FLOAT.pack(prediction) + tail
    return b"\x0a" + _varint(len(body)) + body


def encode(instance: Mapping[str, Any], prediction: float, version: int, millis: int) -> bytes:
    """One serialized tf.Example: numerics as whole numbers (the model rounds them), strings."""
    tail = _int_entry(VERSION_KEY, int(version)) + _entry(TIME_KEY, _INTS, _varint(int(millis)))
    row = _row_entries([instance.get(name) for name, _, _ in _DECLARED])
    return _record(row, float(prediction), tail)


def encode_columns(columns: Mapping[str, Sequence[Any]], predictions: Sequence[float],
                   version: int, millis: int) -> List[bytes]:
    """The records of one request's columns (feature -> values), one per row."""
    tail = _int_entry(VERSION_KEY, int(version)) + _entry(TIME_KEY, _INTS, _varint(int(millis)))
    count = len(predictions)
    ordered = [columns[name] if name in columns else [None] * count for name, _, _ in _DECLARED]
    return [_record(_row_entries(values), float(prediction), tail)
            for values, prediction in zip(zip(*ordered), predictions)]
