"""Pushed model versions: find them, load and warm them up, switch atomically, remember failures.

The layout is TF Serving's: <model_dir>/<integer version>/ holds a SavedModel; anything else
(the pusher's hidden `.N.incomplete` staging directories, files) is ignored. The newest version
that loads is served. Switching is one reference assignment, so a request that already holds
the old model finishes on it; a version that fails to load is logged once and remembered, and
the served version stays.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import posixpath
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf import json_format, text_format  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402

from modules import features  # noqa: E402
from serving import validation  # noqa: E402

LOGGER = logging.getLogger("babyweight.serving")

AVAILABLE, LOADING, END = "AVAILABLE", "LOADING", "END"
_FEATURE_NAMES = frozenset(features.FEATURE_NAMES)


def list_versions(model_dir: str) -> Dict[int, str]:
    """Version number -> directory, for every integer-named directory (TF Serving's rule)."""
    try:
        names = tf.io.gfile.listdir(model_dir)
    except tf.errors.NotFoundError:
        return {}
    versions = {}
    for name in names:
        name = name.rstrip("/")
        path = posixpath.join(model_dir, name) if "://" in model_dir else os.path.join(
            model_dir, name)
        if name.isdigit() and tf.io.gfile.isdir(path):
            versions[int(name)] = path
    return versions


def resolve_version(model_dir: str, version: Optional[int] = None) -> Tuple[int, str]:
    """(version, path): `version` if given, else the newest; FileNotFoundError says what exists."""
    versions = list_versions(model_dir)
    if not versions:
        raise FileNotFoundError(f"no model versions (integer-named directories) in {model_dir}")
    if version is None:
        version = max(versions)
    if version not in versions:
        raise FileNotFoundError(f"no version {version} in {model_dir}; versions: "
                                f"{', '.join(map(str, sorted(versions)))}")
    return version, versions[version]


@dataclasses.dataclass(frozen=True)
class Signature:
    """One callable signature, with what the REST layer needs to feed and describe it."""

    function: Any  # a ConcreteFunction
    input_dtypes: Mapping[str, tf.DType]
    output_names: Sequence[str]

    @property
    def takes_features(self) -> bool:
        return set(self.input_dtypes) == _FEATURE_NAMES

    @property
    def takes_examples(self) -> bool:
        return (list(self.input_dtypes) == [validation.EXAMPLES_INPUT]
                and self.input_dtypes[validation.EXAMPLES_INPUT] == tf.string)


def _signature_defs(path: str) -> Dict[str, Any]:
    """The SavedModel's SignatureDefs as TF Serving prints them in /metadata."""
    proto = saved_model_pb2.SavedModel()
    binary = posixpath.join(path, "saved_model.pb")
    if tf.io.gfile.exists(binary):
        with tf.io.gfile.GFile(binary, "rb") as handle:
            proto.ParseFromString(handle.read())
    else:
        with tf.io.gfile.GFile(posixpath.join(path, "saved_model.pbtxt"), "r") as handle:
            text_format.Parse(handle.read(), proto)
    if not proto.meta_graphs:
        raise ValueError(f"{path}: the SavedModel has no MetaGraph")
    return {name: json_format.MessageToDict(signature, including_default_value_fields=True,
                                            preserving_proto_field_name=True)
            for name, signature in proto.meta_graphs[0].signature_def.items()}


@dataclasses.dataclass
class ServedModel:
    """A loaded version. `loaded` stays referenced: the signatures' variables live in it."""

    version: int
    path: str
    loaded: Any
    signatures: Dict[str, Signature]
    signature_defs: Dict[str, Any]
    loaded_at: float

    def predict(self, signature_name: str, columns: Mapping[str, Sequence[Any]]
                ) -> Dict[str, np.ndarray]:
        """Runs a signature on canonical columns; blocking, so callers run it in a thread."""
        signature = self.signatures[signature_name]
        tensors = {name: tf.constant(values, dtype=signature.input_dtypes[name])
                   for name, values in columns.items()}
        outputs = signature.function(**tensors)
        return {name: tensor.numpy() for name, tensor in outputs.items()}


def load_version(version: int, path: str) -> ServedModel:
    """Loads, checks and warms up one version (one prediction), so its first request is fast."""
    started = time.perf_counter()
    signature_defs = _signature_defs(path)
    loaded = tf.saved_model.load(path)
    signatures = {}
    for name, function in loaded.signatures.items():
        _, kwargs = function.structured_input_signature
        signatures[name] = Signature(function, {k: spec.dtype for k, spec in kwargs.items()},
                                     list(function.structured_outputs))
    model = ServedModel(version, path, loaded, signatures, signature_defs, time.time())
    default = signatures.get(validation.DEFAULT_SIGNATURE)
    if default is None or not default.takes_features:
        raise ValueError(f"{path}: no {validation.DEFAULT_SIGNATURE!r} signature taking the "
                         "declared features")
    columns, _ = validation.feature_columns_from_instances([validation.sample_instance()], 1)
    outputs = model.predict(validation.DEFAULT_SIGNATURE, columns)
    if not all(np.all(np.isfinite(v)) for v in outputs.values()
               if np.issubdtype(v.dtype, np.floating)):
        raise ValueError(f"{path}: the warm-up prediction is not finite: {outputs}")
    LOGGER.info("Loaded version %d from %s in %.1f s (warm-up prediction %s)", version, path,
                time.perf_counter() - started,
                {k: v.tolist() for k, v in outputs.items()})
    return model


def _error_code(error: BaseException) -> str:
    if isinstance(error, tf.errors.OpError):
        return _OP_ERROR_CODES.get(error.error_code, "UNKNOWN")
    if isinstance(error, FileNotFoundError):
        return "NOT_FOUND"
    return "UNKNOWN"


_OP_ERROR_CODES = {
    tf.errors.CANCELLED: "CANCELLED", tf.errors.UNKNOWN: "UNKNOWN",
    tf.errors.INVALID_ARGUMENT: "INVALID_ARGUMENT", tf.errors.NOT_FOUND: "NOT_FOUND",
    tf.errors.FAILED_PRECONDITION: "FAILED_PRECONDITION", tf.errors.INTERNAL: "INTERNAL",
    tf.errors.DATA_LOSS: "DATA_LOSS", tf.errors.UNIMPLEMENTED: "UNIMPLEMENTED",
}


def freeze_heap() -> None:
    """Exempts what is loaded now (TensorFlow, the model) from Python's cyclic GC.

    A full collection scans every tracked object, ~400k once TensorFlow is imported: ~170 ms
    with the GIL held, a latency spike every few thousand requests. Frozen objects are
    skipped. Unfreezing first lets a replaced version's reference cycles be collected; that
    one collection is the only pause, once per version switch.
    """
    from pipelines import gc_freeze

    gc_freeze.refreeze()  # never thaws a pipeline run's freeze in the same process


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""

    def to_json(self) -> Dict[str, Any]:
        """One entry of TF Serving's GetModelStatusResponse.model_version_status."""
        return {"version": str(self.version), "state": self.state,
                "status": {"error_code": self.error_code, "error_message": self.error_message}}


class ModelStore:
    """The served version of one model, and what happened to the others.

    `refresh()` is meant to be called from one poller thread at a time; `current` can be read
    from anywhere (a single attribute, replaced whole).
    """

    def __init__(self, model_dir: str) -> None:
        self.model_dir = model_dir
        self.current: Optional[ServedModel] = None
        self._failed: Dict[int, VersionStatus] = {}
        self._loading: Optional[int] = None
        self._lock = threading.Lock()  # one refresh at a time
        self._warned_empty = False

    def refresh(self) -> Optional[int]:
        """Serves the newest loadable version; returns it if it changed, else None.

        Versions that failed before are skipped (not retried every poll: push a new version,
        or restart the server, to try again). If the served version's directory disappears,
        the newest remaining version is served (TF Serving's rollback by deletion).
        """
        with self._lock:
            versions = list_versions(self.model_dir)
            current = self.current
            if not versions:
                if not self._warned_empty:
                    LOGGER.warning("No model versions in %s yet%s.", self.model_dir,
                                   f"; still serving version {current.version}"
                                   if current else "")
                    self._warned_empty = True
                return None
            self._warned_empty = False
            candidates = sorted((v for v in versions if v not in self._failed), reverse=True)
            if current is not None and current.version in versions:
                candidates = [v for v in candidates if v > current.version]
            for version in candidates:
                model = self._try_load(version, versions[version])
                if model is not None:
                    self.current = model
                    LOGGER.info("Now serving version %d%s.", version,
                                f" (was {current.version})" if current else "")
                    freeze_heap()
                    return version
            return None

    def _try_load(self, version: int, path: str) -> Optional[ServedModel]:
        self._loading = version
        try:
            return load_version(version, path)
        except Exception as error:  # noqa: BLE001 - any broken version must not stop serving
            message = f"{type(error).__name__}: {error}".strip()
            self._failed[version] = VersionStatus(version, END, _error_code(error), message[:2000])
            LOGGER.error("Version %d at %s failed to load; it will not be retried (push a new "
                         "version or restart to try again). %s", version, path, message[:500])
            return None
        finally:
            self._loading = None

    def statuses(self) -> List[VersionStatus]:
        """The served version first, then one being loaded, then failed ones, newest first."""
        current = self.current
        result = [VersionStatus(current.version, AVAILABLE)] if current else []
        loading = self._loading
        if loading is not None:
            result.append(VersionStatus(loading, LOADING))
        result += [self._failed[v] for v in sorted(self._failed, reverse=True)]
        return result
