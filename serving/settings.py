"""The serving commands' settings, declared once as typed fields that become --flags.

Same mechanism as the pipeline (`pipelines.config.add_flags` / `from_flags`), so `--help` always
lists every setting with its default, and tests build the same objects without a command line.
"""
from __future__ import annotations

import dataclasses

from pipelines.config import PIPELINE_NAME, PipelineConfig, setting

DEFAULT_MODEL_DIR = str(PipelineConfig.serving_dir)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which pushed model: TF Serving's layout, <model_dir>/<integer version>/ (a SavedModel)."""

    model_dir: str = setting(
        DEFAULT_MODEL_DIR,
        "Directory holding the model's version directories (the pipeline's --serving-dir); "
        "local paths or gs:// URLs.")
    model_name: str = setting(
        PIPELINE_NAME, "Model name in the REST paths: /v1/models/<model-name>[:predict].")
    max_num_load_retries: int = setting(
        5, "Times a version that failed to load (e.g. seen while still being copied) is "
        "tried again before it is given up (TF Serving's --max_num_load_retries); 0 = once.")
    load_retry_interval_micros: int = setting(
        60_000_000, "Microseconds between those tries (TF Serving's "
        "--load_retry_interval_micros).")


@dataclasses.dataclass(frozen=True)
class LimitsConfig:
    """What a single request may carry; anything beyond is refused with a 400."""

    max_instances: int = setting(10_000, "Most instances (rows) in one request.")
    max_body_bytes: int = setting(10 * 1024 * 1024, "Largest request body, in bytes.")


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
    """Server-side batching: concurrent requests share one model call.

    While a model call runs, arriving requests queue; the next call takes them all (up to
    --max-batch-rows), so an idle server adds no delay and a busy one makes bigger calls.
    """

    max_batch_rows: int = setting(1024, "Most rows in one model call (a bigger request runs "
                                  "alone).")
    batch_timeout_ms: float = setting(
        0.0, "Also hold a forming batch open this long for more rows before calling the model "
        "(TF Serving's batch_timeout_micros); 0 = call as soon as the model is free.")
    model_threads: int = setting(1, "Model calls that may run at once, each in its own thread.")
    tf_threads: int = setting(
        1, "TensorFlow threads within one model call (intra- and inter-op); 0 = TensorFlow's "
        "default, one per core. Small calls are faster on one thread and leave the other "
        "cores to the HTTP side.")


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Where the REST server listens, how often it looks for new versions, what it logs."""

    host: str = setting("127.0.0.1", "Address to bind; 0.0.0.0 exposes the server to the "
                        "network (then set --auth-token-file). Bound to loopback, the server "
                        "answers only requests addressed to localhost, 127.0.0.1 or [::1].")
    port: int = setting(8501, "Port to listen on (TF Serving's REST port is 8501).")
    poll_seconds: float = setting(
        2.0, "Seconds between looks at --model-dir for a new version (hot reload).")
    access_log: bool = setting(True, "Log one line per request: method, path, status, "
                               "latency.")
    auth_token_file: str = setting(
        "", "File holding a bearer token; when set, every request needs 'Authorization: "
        "Bearer <token>' (401 otherwise). Empty = no token.")
    verbose: bool = setting(False, "Show TensorFlow's and the libraries' own logs too.")
