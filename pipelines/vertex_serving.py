"""Serving a pushed version on a Vertex AI endpoint with stock TF Serving as a custom container.

Vertex AI's prebuilt TensorFlow containers lag the TensorFlow the model is saved with, so the
endpoint runs `tensorflow/serving` at the training version (pipelines/cloud_config.py). It meets
Vertex AI's custom-container contract as configured here: Vertex AI copies the uploaded
`artifact_uri` to $(AIP_STORAGE_URI) and expands that reference in the container's args; TF
Serving loads `<model_base_path>/<version>/`, answers health checks on its model-status route
and predictions on its REST predict route, both on the first declared port. The request and
the answer keep TF Serving's REST format ({"instances": ...} -> {"predictions": ...}), which is
also what Vertex AI's own :predict takes and returns.

Files: the pipeline's tasks see Cloud Storage through Vertex AI's /gcs/ mount (Cloud Storage
FUSE), so pushing is plain file copies (common/gcs.py; GCS_MOUNT_ENV moves the mount, which
tests point at a directory).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping

from common.gcs import GCS_MOUNT_ENV, mounted  # noqa: F401  (the push reads through the mount)

log = logging.getLogger("babyweight.vertex_serving")

MODEL_NAME = "babyweight"
REST_PORT = 8501
GRPC_PORT = 8500


def predict_route(model_name: str = MODEL_NAME) -> str:
    return f"/v1/models/{model_name}:predict"


def health_route(model_name: str = MODEL_NAME) -> str:
    """TF Serving's model status: 200 once the model is known, so Vertex AI routes to it."""
    return f"/v1/models/{model_name}"


def container_args(model_name: str = MODEL_NAME) -> List[str]:
    """tensorflow_model_server's flags; $(AIP_STORAGE_URI) is expanded by Vertex AI."""
    return [f"--model_name={model_name}", "--model_base_path=$(AIP_STORAGE_URI)",
            f"--rest_api_port={REST_PORT}", f"--port={GRPC_PORT}"]


def upload_arguments(image: str, artifact_uri: str, display_name: str,
                     model_name: str = MODEL_NAME) -> Dict[str, Any]:
    """aiplatform.Model.upload's arguments for a TF Serving custom container."""
    return {
        "display_name": display_name,
        "artifact_uri": artifact_uri,
        "serving_container_image_uri": image,
        # The image's entrypoint script would add its own --model_base_path: run the server.
        "serving_container_command": ["tensorflow_model_server"],
        "serving_container_args": container_args(model_name),
        "serving_container_ports": [REST_PORT],
        "serving_container_predict_route": predict_route(model_name),
        "serving_container_health_route": health_route(model_name),
        "sync": True,
    }


def find_or_create_endpoint(aiplatform: Any, name: str) -> Any:
    """The newest endpoint with display name `name`, or a new one."""
    found = aiplatform.Endpoint.list(filter=f'display_name="{name}"',
                                     order_by="create_time desc")
    if found:
        return found[0]
    log.info("Creating the Vertex AI endpoint %s", name)
    return aiplatform.Endpoint.create(display_name=name)


def deploy(deployment: Mapping[str, Any], artifact_uri: str, version: int) -> Dict[str, str]:
    """Uploads `artifact_uri` (holding `<version>/`) as a model and deploys it to the endpoint
    with all of the traffic; returns the model's and the endpoint's resource names."""
    from google.cloud import aiplatform

    aiplatform.init(project=deployment["project"], location=deployment["region"])
    endpoint = find_or_create_endpoint(aiplatform, deployment["endpoint_name"])
    model = aiplatform.Model.upload(**upload_arguments(
        deployment["image"], artifact_uri, display_name=f"v{version}"))
    model.deploy(endpoint=endpoint, deployed_model_display_name=f"v{version}",
                 machine_type=deployment["machine_type"],
                 min_replica_count=deployment["min_replica_count"],
                 max_replica_count=deployment["max_replica_count"],
                 traffic_percentage=100, sync=True)
    log.info("Deployed %s (version %d) to %s", model.resource_name, version,
             endpoint.resource_name)
    return {"model": model.resource_name, "endpoint": endpoint.resource_name}
