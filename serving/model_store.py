"""Pushed model versions: find them on disk, load, check and warm up one.

The layout is TF Serving's: <model_dir>/<version>/ holds a SavedModel, where a version's name
is ASCII digits that fit int64 (common/versions.py); anything else (the pusher's hidden
`.N.incomplete` staging directories, files, other names) is not a version. Which version is
served, and when it switches, is serving/version_manager.py's job.
"""
from __future__ import annotations

import dataclasses
import logging
import posixpath
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple


import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf import json_format, text_format  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402

from modules import features  # noqa: E402
from serving import session_model, training_query, validation, warmup  # noqa: E402
from serving.versions import list_version_dirs  # noqa: E402,F401  (re-exported)

LOGGER = logging.getLogger("babyweight.serving")

AVAILABLE, LOADING, END = "AVAILABLE", "LOADING", "END"
_FEATURE_NAMES = frozenset(features.FEATURE_NAMES)


def list_versions(model_dir: str) -> Dict[int, str]:
    """Version number -> directory, for every version-named directory (TF Serving's rule)."""
    return list_version_dirs(model_dir)[0]


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

    function: Any  # serving/session_model.py's Call: canonical columns -> numpy outputs
    input_dtypes: Mapping[str, tf.DType]
    output_names: Sequence[str]

    @property
    def takes_features(self) -> bool:
        return set(self.input_dtypes) == _FEATURE_NAMES

    @property
    def takes_serialized(self) -> bool:
        """One string input of serialized tf.Examples: serving_tf_example's, regression's."""
        return (len(self.input_dtypes) == 1
                and next(iter(self.input_dtypes.values())) == tf.string)

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
    """A loaded version. `loaded` (its Session) stays referenced: the signatures run in it."""

    version: int
    path: str
    loaded: Any
    signatures: Dict[str, Signature]
    signature_defs: Dict[str, Any]
    loaded_at: float
    in_flight: int = 0  # requests using it now (ModelStore counts them under a lock)

    def predict(self, signature_name: str, columns: Mapping[str, Sequence[Any]]
                ) -> Dict[str, np.ndarray]:
        """Runs a signature on canonical columns; blocking, so callers run it in a thread."""
        return self.signatures[signature_name].function(columns)


def load_version(version: int, path: str) -> ServedModel:
    """Loads, checks and warms up one version (one prediction), so its first request is fast."""
    started = time.perf_counter()
    training_query.note_feature_meaning(version, path)
    signature_defs = _signature_defs(path)
    loaded, calls = session_model.load(path)
    signatures = {name: Signature(call, dtypes, list(call.output_names))
                  for name, (call, dtypes) in calls.items()}
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
    replayed = warmup.replay(model)  # TF Serving's warmup file, when the export has one
    LOGGER.info("Loaded version %d from %s in %.1f s (warm-up prediction %s, %d warmup "
                "requests replayed)", version, path, time.perf_counter() - started,
                {k: v.tolist() for k, v in outputs.items()}, replayed)
    return model


def load_failure(error: BaseException) -> str:
    """Why load_version failed, as a version's status says it: the error's kind and text."""
    return f"{type(error).__name__}: {error}".strip()


def cannot_load(version: int, path: str, error: BaseException) -> str:
    """A command's one-line message for a version load_version failed on (a TensorFlow
    error's text can run to several lines)."""
    return f"cannot load version {version} from {path}: {load_failure(error)}".splitlines()[0]


def error_code(error: BaseException) -> str:
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
