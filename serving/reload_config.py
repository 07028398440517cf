"""gRPC's ModelService.HandleReloadConfigRequest: a new ModelServerConfig, applied now.

As TF Serving's ServerCore::ReloadConfig: the call returns once the loader has applied the
config (its versions loaded, its labels set), and fails with TF Serving's code and message
when it cannot be: a config that is not a model_config_list, labels on a version that does
not serve (FAILED_PRECONDITION), no version of the model serving afterwards. This server
serves one model, so the config must name the served model and its base_path (another
model, or several, need a restart with another --model-config-file).
"""
from __future__ import annotations

import os
from typing import Any

from serving import model_config
from serving.loader import Loader
from serving.service import ApiError, Service

NOT_A_LIST = ("ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
              "ModelConfigList is currently supported")


def reload(shared: Service, loader: Loader, proto: Any, timeout: float = 600.0) -> None:
    """Applies `proto` (a ModelServerConfig) or raises ApiError saying why not."""
    if proto.WhichOneof("config") != "model_config_list":
        raise ApiError(400, NOT_A_LIST)
    store = shared.store
    try:
        found = model_config.from_proto(proto, "ReloadConfigRequest",
                                        store.policy.allow_unavailable_labels)
    except model_config.ConfigError as error:
        raise ApiError(400, str(error)) from None
    if (found.name, os.path.abspath(found.base_path)) != (
            shared.name, os.path.abspath(store.model_dir)):
        raise ApiError(400, f"ReloadConfigRequest: names model {found.name!r} at "
                       f"{found.base_path!r}; this server serves {shared.name!r} from "
                       f"{store.model_dir!r} (another model needs a restart)")
    if not loader.apply(found.policy, timeout):
        raise ApiError(503, f"ReloadConfigRequest: the config was not applied within "
                       f"{timeout:g} s; it will be once the loader is done")
    if store.label_problem:
        raise ApiError(400, store.label_problem, grpc_code="FAILED_PRECONDITION")
    if store.current is None:
        raise ApiError(404, f"ReloadConfigRequest: no version of model {shared.name} serves "
                       f"under {found.policy.describe()}; see GetModelStatus")
