"""The request log's records: one serialized tf.Example per predicted row, in the wire format.

Why hand-written: building tf.train.Example messages costs the writer thread many times as much
CPU, and that thread shares the interpreter (the GIL) with the requests. Most of a record
repeats from one row to the next: the features' entries of a row are cached by the row's
values (a few thousand distinct rows: small vocabularies, whole-number ages and weeks), the
version's entry and the time's high bits by value; a record is a join of cached pieces, the
prediction's four bytes and the time's last byte. The bytes are the ones tf.train.Example would
write, framed as tf.io.TFRecordWriter frames them (tests/test_request_log.py reads them back).
"""
from __future__ import annotations

import functools
import struct
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Tuple

from google_crc32c import value as _crc32c

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
_UINT32, _UINT64 = struct.Struct("<I"), struct.Struct("<Q")


def as_served(value: Any) -> int:
    """A numeric value as the model computes with it, so the log holds what was predicted on.

    serving_default takes float32 and rounds it with tf.round, half to even, before the cast to
    int64 (modules/export.py): the value is cast to float32 first (26.5000001 is 26.5 there,
    which the model rounds to 26), then rounded as Python rounds a float, half to even too. An
    int is a tf.Example's int64, which reaches the model as it is.
    """
    if isinstance(value, int):
        return value
    return round(_FLOAT.unpack(_FLOAT.pack(float(value)))[0])


def _row_entries(values: Sequence[Any]) -> bytes:
    """The features' entries of one row (`values` in declaration order)."""
    parts = []
    for (name, categorical, missing), value in zip(_DECLARED, values):
        if categorical:
            parts.append(_string_entry(name, value, missing))
        else:
            parts.append(_int_entry(name, as_served(value)))
    return b"".join(parts)


_FIRST_BYTE = tuple(bytes([low | 0x80]) for low in range(0x80))


@functools.lru_cache(maxsize=64)
def _time_high(high: int) -> Tuple[bytes, bytes]:
    """For one `millis >> 7` (128 ms): the time entry before the varint's first byte, and the
    varint's other bytes."""
    rest = _varint(high)
    entry = _entry(TIME_KEY, _INTS, b"\0" + rest)  # the first byte's value does not matter
    return entry[:len(entry) - len(rest) - 1], rest


def _time_entry(millis: int) -> bytes:
    """The request time's entry; only its first varint byte changes within 128 ms."""
    if millis < 0x80:  # and negative ones, whose varint is ten bytes
        return _int_entry(TIME_KEY, millis)
    prefix, rest = _time_high(millis >> 7)
    return prefix + _FIRST_BYTE[millis & 0x7F] + rest


def _tail(version: int, millis: int) -> bytes:
    """The entries after the prediction: the version and the request's time."""
    return _int_entry(VERSION_KEY, int(version)) + _time_entry(int(millis))


_length = functools.lru_cache(maxsize=1024)(_varint)  # records' lengths: a handful of values
# A row's feature entries by its values; cleared when full (the vocabularies are small).
_ROWS: Dict[Tuple[Any, ...], bytes] = {}
_MAX_ROWS = 65_536


def _record(row: bytes, prediction: float, tail: bytes) -> bytes:
    body_length = len(row) + len(_PREDICTION_PREFIX) + 4 + len(tail)
    return b"".join((b"\x0a", _length(body_length), row, _PREDICTION_PREFIX,
                     _FLOAT.pack(prediction), tail))


def _cached_row(values: Tuple[Any, ...]) -> bytes:
    try:
        return _ROWS[values]
    except KeyError:
        pass
    except TypeError:  # an unhashable value: encoded (or refused) without the cache
        return _row_entries(values)
    if len(_ROWS) >= _MAX_ROWS:
        _ROWS.clear()
    row = _ROWS[values] = _row_entries(values)
    return row


def encode(instance: Mapping[str, Any], prediction: float, version: int, millis: int) -> bytes:
    """One serialized tf.Example: numerics as the whole numbers the model computed with, strings."""
    row = _row_entries([instance.get(name) for name, _, _ in _DECLARED])
    return _record(row, float(prediction), _tail(version, millis))


def encode_columns(columns: Mapping[str, Sequence[Any]], predictions: Sequence[float],
                   version: int, millis: int) -> List[bytes]:
    """The records of one request's columns (feature -> values), one per row."""
    tail = _tail(version, millis)
    count = len(predictions)
    ordered = [columns[name] if name in columns else [None] * count for name, _, _ in _DECLARED]
    return [_record(_cached_row(values), float(prediction), tail)
            for values, prediction in zip(zip(*ordered), predictions)]


def _masked_crc(data: bytes) -> bytes:
    """TFRecord's checksum: CRC-32C, rotated and offset (tensorflow/core/lib/hash/crc32c.h)."""
    crc = _crc32c(data)
    return _UINT32.pack(((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF)


def framed(records: Sequence[bytes]) -> bytes:
    """The records as a TFRecord file holds them (length, its checksum, data, its checksum), so
    a whole burst goes to the file in one write, during which the GIL is free."""
    parts = []
    for record in records:
        length = _UINT64.pack(len(record))
        parts += (length, _masked_crc(length), record, _masked_crc(record))
    return b"".join(parts)


class ExampleRows:
    """Serialized tf.Examples as the instances `encode` takes, decoded as they are iterated
    (by the request log's writer thread): the request's thread only hands them over."""

    def __init__(self, examples: Sequence[bytes]) -> None:
        self.examples = examples

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        from tensorflow.core.example import example_pb2

        for serialized in self.examples:
            feature_map = example_pb2.Example.FromString(serialized).features.feature
            instance: Dict[str, Any] = {}
            for name, categorical, _ in _DECLARED:
                if name not in feature_map:
                    continue
                kind = feature_map[name].WhichOneof("kind")
                values = getattr(feature_map[name], kind).value if kind else ()
                if values:
                    instance[name] = values[0].decode() if categorical else values[0]
            yield instance
