"""The serving commands' settings, declared once as typed fields that become --flags.

Same mechanism as the pipeline (`common.config.add_flags` / `from_flags`), so `--help` always
lists every setting with its default, and tests build the same objects without a command line.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from common.config import PIPELINE_NAME, PipelineConfig, setting
from serving.pacing import DEFAULT_CPU_SHARE

DEFAULT_MODEL_DIR = str(PipelineConfig.serving_dir)


@dataclasses.dataclass(frozen=True)
class PushedVersionConfig:
    """Which pushed version a prediction command uses (batch and local predict extend this)."""

    model_dir: str = setting(DEFAULT_MODEL_DIR, "Directory of version directories "
                             "(the pipeline's --serving-dir); local or gs://.")
    version: Optional[int] = setting(None, "Version to use; default: the newest.", minimum=0)


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
        "tried again before it is given up (TF Serving's --max_num_load_retries); 0 = once.",
        minimum=0)
    load_retry_interval_micros: int = setting(
        60_000_000, "Microseconds between those tries (TF Serving's "
        "--load_retry_interval_micros).", minimum=0)
    load_cpu_share: float = setting(
        DEFAULT_CPU_SHARE, "Share of one core that loading, warming up and releasing a version "
        "may take while another version serves, so requests keep the rest; 1 = unpaced (a "
        "switch is quicker, requests meanwhile slower).", above=0, maximum=1)
    model_config_file: str = setting(
        "", "A ModelServerConfig in text format, as TF Serving's --model_config_file: its one "
        "model's name and base_path replace --model-name and --model-dir, and it sets the "
        "version policy (latest N, all, specific) and version labels "
        "(/v1/models/<name>/labels/<label>). Empty: the latest version serves.")
    model_config_file_poll_wait_seconds: float = setting(
        0.0, "Seconds between reads of --model-config-file (TF Serving's "
        "--model_config_file_poll_wait_seconds); 0 = read once, at start.", minimum=0)
    allow_version_labels_for_unavailable_models: bool = setting(
        False, "Let a new label point at a version that is not serving yet (TF Serving's "
        "flag of that name); an existing label still moves only to a serving version.")

    def check(self) -> None:
        """Raises ValueError naming the flag whose value cannot work."""
        if not 0.0 < self.load_cpu_share <= 1.0:
            raise ValueError(f"--load-cpu-share must be above 0 and at most 1, got "
                             f"{self.load_cpu_share}")


@dataclasses.dataclass(frozen=True)
class LimitsConfig:
    """What a single request may carry; anything beyond is refused with a 400."""

    max_instances: int = setting(10_000, "Most instances (rows) in one request.", minimum=1)
    max_body_bytes: int = setting(10 * 1024 * 1024, "Largest request body, in bytes.", minimum=1)


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
    """Server-side batching: concurrent requests share one model call.

    While a model call runs, arriving requests queue; the next call takes them all (up to
    --max-batch-rows), so an idle server adds no delay and a busy one makes bigger calls.
    """

    max_batch_rows: int = setting(1024, "Most rows in one model call (a bigger request runs "
                                  "alone).", minimum=1)
    batch_timeout_ms: float = setting(
        0.0, "Also hold a forming batch open this long for more rows before calling the model "
        "(TF Serving's batch_timeout_micros); 0 = call as soon as the model is free.", minimum=0)
    model_threads: int = setting(
        1, "Model calls that may run at once, each in its own thread.", minimum=1)
    tf_threads: int = setting(
        1, "TensorFlow threads within one model call (intra- and inter-op); 0 = TensorFlow's "
        "default, one per core. Small calls are faster on one thread and leave the other "
        "cores to the HTTP side.", minimum=0)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Where the REST server listens, how often it looks for new versions, what it logs."""

    host: str = setting("127.0.0.1", "Address to bind; 0.0.0.0 exposes the server to the "
                        "network (then set --auth-token-file). Bound to loopback, the server "
                        "answers only requests addressed to localhost, 127.0.0.1 or [::1].")
    port: int = setting(
        8501, "Port to listen on (TF Serving's REST port is 8501).", minimum=0, maximum=65535)
    grpc_port: int = setting(
        8500, "Port for TF Serving's gRPC API (tensorflow.serving.PredictionService and "
        "ModelService, TF Serving's gRPC port is 8500), bound on --host beside REST; 0 = no "
        "gRPC.", minimum=0, maximum=65535)
    grpc_max_threads: int = setting(
        32, "The most gRPC requests in progress at once (TF Serving's --grpc_max_threads), so "
        "also the most that one model call can batch; more wait.", minimum=1)
    poll_seconds: float = setting(
        2.0, "Seconds between looks at --model-dir for a new version (hot reload).", above=0)
    metrics: bool = setting(True, "Prometheus metrics at /monitoring/prometheus/metrics "
                            "(TF Serving's path): requests, latency, batch sizes, loads.")
    monitoring_dir: str = setting(
        "", "Where `python -m monitoring` writes its results (<reports-dir>/monitoring): the "
        "newest result's distances and thresholds become gauges in the metrics, read at "
        "scrape time; empty: none.")
    access_log: bool = setting(True, "Log one line per request: method, path, status, "
                               "latency.")
    auth_token_file: str = setting(
        "", "File holding a bearer token; when set, every request needs 'Authorization: "
        "Bearer <token>' (401 otherwise). Empty = no token.")
    verbose: bool = setting(False, "Show TensorFlow's and the libraries' own logs too.")

    def check(self) -> None:
        """Raises ValueError naming the flags whose values cannot work together."""
        if self.port and self.port == self.grpc_port:
            raise ValueError(f"--port and --grpc-port are both {self.port}: REST and gRPC "
                             "each need a port of their own")


@dataclasses.dataclass(frozen=True)
class RequestLogSettings:
    """A sample of requests with their predictions, for monitoring (`python -m monitoring`)."""

    request_log_dir: str = setting(
        "", "Log a sample of requests with their predictions, model version and time here, as "
        "TFRecord files of tf.Example (TFDV reads them); empty: no log.")
    request_log_sample_rate: float = setting(
        0.1, "Share of requests the log keeps.", minimum=0, maximum=1)
    request_log_max_bytes: int = setting(256 * 1024 * 1024, "Most bytes the log's files may "
                                         "take together; the oldest files go first.", minimum=1)
    request_log_file_seconds: float = setting(
        60.0, "A log file is completed (and readable) after this many seconds or 16 MiB.", above=0)

    def config(self):
        """The writer's configuration, or None when logging is off."""
        if not self.request_log_dir:
            return None
        from serving.request_log import RequestLogConfig

        return RequestLogConfig(self.request_log_dir, self.request_log_sample_rate,
                                max_total_bytes=self.request_log_max_bytes,
                                max_file_bytes=min(16 * 1024 * 1024, self.request_log_max_bytes),
                                max_file_seconds=self.request_log_file_seconds)
