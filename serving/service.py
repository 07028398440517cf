"""What REST and gRPC share: which version answers, statuses, metadata, one model call path.

Both front ends (serving/app.py and serving/grpc_server.py) call these functions, so a request
is checked, batched, logged and answered the same way whichever protocol carried it, and an
error has the same message on both: ApiError's `status` is the REST code, `grpc_code` its gRPC
twin (the mapping TF Serving's REST handler uses in reverse).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from modules.contract import REGRESS_OUTPUTS
from modules.features import LABEL_KEY
from serving import validation
from serving.batching import Batcher
from serving.model_store import ServedModel, Signature, VersionStatus
from serving.request_log import RequestLog
from serving.settings import LimitsConfig
from serving.version_manager import ModelStore, Serving

# REST status -> gRPC status code name (grpc.StatusCode member).
GRPC_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND",
              405: "UNIMPLEMENTED", 415: "INVALID_ARGUMENT", 503: "UNAVAILABLE",
              500: "INTERNAL"}


class Label(str):
    """A version label (TF Serving's ModelSpec.version_label), where a version number may go."""


# What a request asks for: the newest serving version (None), a number, or a label.
Wanted = Union[None, int, Label]


class ApiError(Exception):
    """An answer other than success, as TF Serving gives it: {"error": message} / a status."""

    def __init__(self, status: int, message: str, headers: Optional[dict] = None,
                 grpc_code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self._grpc_code = grpc_code  # when it is not REST status's usual twin

    @property
    def grpc_code(self) -> str:
        return self._grpc_code or GRPC_CODES.get(self.status, "UNKNOWN")


@dataclasses.dataclass
class Service:
    """The served model's name, its versions, the shared batcher and the request log."""

    name: str
    store: ModelStore
    batcher: Batcher
    limits: LimitsConfig
    request_log: Optional[RequestLog] = None

    def check_name(self, model_name: str, version: Optional[int]) -> None:
        if model_name != self.name:
            wanted = f"Latest({model_name})" if version is None else \
                f"Specific({model_name}, {version})"
            raise ApiError(404, f"Servable not found for request: {wanted}")

    def label_version(self, model_name: str, label: str,
                      serving: Optional[Serving] = None) -> int:
        """The version a label points at (in `serving`, else the store's snapshot now), or TF
        Serving's 400 for a label it does not know."""
        labels = (self.store.serving if serving is None else serving).labels
        version = labels.get(label) if model_name == self.name else None
        if version is None:
            raise ApiError(400, f"Unrecognized servable version label: {label}")
        return version

    def acquire(self, model_name: str, number: Wanted) -> ServedModel:
        """The version to answer with, counted in use: the caller must `release` it."""
        ever_served = self.store.ever_served  # set after a snapshot serves: read it first
        serving = self.store.serving  # one snapshot: the label and the version it names
        if isinstance(number, Label):
            number = self.label_version(model_name, number, serving)
        self.check_name(model_name, number)
        name = self.name
        served = self.store.acquire(number, serving)
        if served is None:
            if serving.latest is None:
                if ever_served:  # unloaded: TF Serving's answer when none is left
                    wanted = f"Latest({name})" if number is None else \
                        f"Specific({name}, {number})"
                    raise ApiError(404, f"Servable not found for request: {wanted}")
                raise ApiError(503, f"No version of model {name!r} is loaded yet; see "
                               f"/v1/models/{name} for its status.")
            listed = ", ".join(map(str, sorted(serving.versions)))
            plural = "s" if "," in listed else ""
            raise ApiError(404, f"Servable not found for request: Specific({name}, {number})"
                           f"; serving version{plural} {listed}")
        return served

    def release(self, served: ServedModel) -> None:
        self.store.release(served)

    def statuses(self, model_name: str, number: Wanted) -> List[VersionStatus]:
        """GetModelStatus: every version's state, or the one asked for (404 if unknown).

        A label is not looked at, as TF Serving's GetModelStatus does not: every version.
        """
        if isinstance(number, Label):
            number = None
        self.check_name(model_name, number)
        found = self.store.statuses()
        if number is not None:
            found = [s for s in found if s.version == number][:1]
            if not found:
                raise ApiError(404, f"Could not find version {number} of model {self.name}")
        elif not found:
            raise ApiError(404, f"Could not find any versions of model {self.name}")
        return found

    def metadata(self, model_name: str, number: Wanted) -> Tuple[int, Dict]:
        """(version, signature defs as JSON dicts) of the version that would answer."""
        served = self.acquire(model_name, number)
        self.release(served)
        return served.version, served.signature_defs

    async def call(self, served: ServedModel, signature_name: str,
                   columns: validation.Columns, rows: int) -> Dict[str, np.ndarray]:
        """One checked request through the shared batcher; a request on the features is
        offered to the request log (REST and gRPC alike, the same records)."""
        try:
            outputs = await self.batcher.predict(served, signature_name, columns, rows)
        except tf.errors.InvalidArgumentError as error:  # validated input never gets here
            raise ApiError(400, error.message) from None
        return self._logged(served, signature_name, columns, outputs)

    def call_now(self, served: ServedModel, signature_name: str,
                 columns: validation.Columns, rows: int) -> Optional[Dict[str, np.ndarray]]:
        """`call` made at once in this thread when the model is free and nothing is queued
        (Batcher.predict_now), else None without a call; the same errors and log."""
        try:
            outputs = self.batcher.predict_now(served, signature_name, columns, rows)
        except tf.errors.InvalidArgumentError as error:
            raise ApiError(400, error.message) from None
        if outputs is None:
            return None
        return self._logged(served, signature_name, columns, outputs)

    def _logged(self, served: ServedModel, signature_name: str, columns: validation.Columns,
                outputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Logs what a signature that predicts the weight was asked and answered: by feature
        columns, or by serialized tf.Examples (:regress, serving_tf_example), which the log's
        writer decodes, so that monitoring sees every protocol's traffic."""
        if self.request_log is None:
            return outputs
        found = served.signatures[signature_name]
        if found.takes_features:
            self.request_log.log_columns(columns, outputs.get(LABEL_KEY, ()), served.version)
        elif found.takes_serialized:
            predicted = outputs.get(LABEL_KEY, outputs.get(REGRESS_OUTPUTS))
            if predicted is not None:  # transform_features predicts nothing
                (examples,) = columns.values()
                self.request_log.log_examples(examples, predicted, served.version)
        return outputs


def signature(served: ServedModel, signature_name: str) -> Signature:
    """The named signature, or TF Serving's 400 naming the ones there are."""
    found = served.signatures.get(signature_name)
    if found is None:
        raise ApiError(400, f"Serving signature name: \"{signature_name}\" not found "
                       f"in signature def; available: {', '.join(sorted(served.signatures))}")
    return found


def predict_columns(found: Signature, signature_name: str, payload: object, row_format: bool,
                    max_instances: int) -> Tuple[validation.Columns, int]:
    """A predict payload (REST JSON or gRPC tensors as lists) -> checked canonical columns."""
    body = validation.PredictBody(signature_name, row_format, payload)
    if found.takes_features:
        return validation.feature_columns(body, max_instances)
    if found.takes_examples:
        return validation.example_column(payload, row_format, max_instances)
    raise ApiError(400, f"signature {signature_name!r} takes inputs this server "
                   "does not build from JSON; use serving_default")
