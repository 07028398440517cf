"""Model outputs to JSON the way TF Serving writes them, shared by every serving entry point.

float32 values print as their shortest round-trip decimal (7.6761928, not 7.676192760467529),
so an answer read back into float32 is exactly the model's output.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List

import numpy as np

try:
    import orjson
except ImportError:  # pragma: no cover - orjson comes with apache-beam and tfx
    orjson = None


def _jsonable(value: Any) -> Any:
    """Fallback for the stdlib encoder: numpy values to Python ones, float32 kept short."""
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.floating):
        return float(str(np.float32(value)))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def encode_json(value: Any) -> bytes:
    if orjson is not None:
        try:
            return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError:  # e.g. object arrays of bytes
            pass
    return json.dumps(_jsonable(value)).encode()


def predictions_json(outputs: Dict[str, np.ndarray], row_format: bool) -> Dict[str, Any]:
    """TF Serving's answer: one output tensor is unnamed; several are named per row/column."""
    key = "predictions" if row_format else "outputs"
    if len(outputs) == 1:
        return {key: next(iter(outputs.values()))}
    if not row_format:
        return {key: outputs}
    return {key: rows(outputs)}


def rows(outputs: Dict[str, np.ndarray]) -> List[Dict[str, Any]]:
    """Column arrays -> one {output name: value} object per row."""
    names = list(outputs)
    count = len(outputs[names[0]]) if names else 0
    return [{name: outputs[name][i] for name in names} for i in range(count)]
