"""Session fixtures for the serving tests: two small trained models, their stand-ins, and a
running-server helper.

The models are the run's shared ones (tests/model_fixtures.py: the Trainer's own run_fn on
synthetic rows, a few seconds of training, not the ~80 s pipeline, made once for test_model.py
and these tests), so the server serves a real exported SavedModel with the three signatures.
Version 2 is trained with another seed than version 1, so a hot reload is visible in the
predictions. Test modules load this file with `pytest_plugins = ("tests.serving_fixtures",)`
(importing the fixtures by name would define them once per module, training twice).
"""
from __future__ import annotations

import dataclasses
import gc
import os
import pathlib
import shutil
import subprocess
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence


import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from common.net import free_port  # noqa: E402
from modules import features  # noqa: E402
from tests import server_forks, shared_zygote  # noqa: E402
from tests.made_once import made_once  # noqa: E402
from tests.model_fixtures import TrainedModels, eval_rows  # noqa: E402
from tests.tolerances import prediction_abs  # noqa: E402

pytest_plugins = ("tests.model_fixtures",)  # the shared trained models

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL_NAME = "babyweight"
COURSE_PAYLOAD = {"instances": [{"is_male": "True", "mother_age": 26.0,
                                 "plurality": "Single(1)", "gestation_weeks": 39}]}
JSON = {"Content-Type": "application/json"}


@dataclasses.dataclass(frozen=True)
class ServingModels:
    exports: Dict[int, pathlib.Path]  # version -> exported SavedModel (not pushed anywhere)
    instances: List[Dict[str, Any]]  # canonical JSON instances from the eval rows

    def push(self, serving_dir: pathlib.Path, version: int,
             source: Optional[pathlib.Path] = None) -> pathlib.Path:
        """Copies a model into serving_dir/<version>/ the pusher's way: staged, then renamed."""
        serving_dir.mkdir(parents=True, exist_ok=True)
        staging = serving_dir / f".{version}.incomplete"
        shutil.copytree(source or self.exports[version], staging)
        target = serving_dir / str(version)
        os.rename(staging, target)
        return target

    def serving_dir(self, root: pathlib.Path, versions: Sequence[int] = (1,)) -> pathlib.Path:
        """A fresh TF Serving layout holding `versions`."""
        target = root / "serving" / MODEL_NAME
        for version in versions:
            self.push(target, version)
        return target


def _instance(row: Dict[str, List[Any]]) -> Dict[str, Any]:
    def plain(value: Any) -> Any:
        return value.decode() if isinstance(value, bytes) else float(value)
    return {name: plain(row[name][0]) for name in features.FEATURE_NAMES}


@pytest.fixture(scope="session")
def serving_models(trained_models: TrainedModels) -> ServingModels:
    """The shared models' two versions; the instances are their eval rows."""
    return ServingModels(dict(trained_models.exports), [_instance(row) for row in eval_rows()])


@pytest.fixture(scope="session")
def stand_in_models(tmp_path_factory: pytest.TempPathFactory) -> ServingModels:
    """Versions 1 and 2 as tests/tiny_exports.py's stand-ins (once per run, tests/made_once.py):
    for the tests of which version serves, where a load of the trained model is most of a
    server's cost and its predictions only tell the versions apart."""
    from tests import tiny_exports

    made = made_once("stand_in_models", tmp_path_factory, tiny_exports.save_stand_ins)
    return ServingModels({int(v): pathlib.Path(p) for v, p in made.items()},
                         [_instance(row) for row in eval_rows()])


# Each export loaded once per test process: several modules take their reference answers from
# the same two exports, and a load costs far more than the call. Exports are never changed.
_LOADED: Dict[str, Any] = {}


def in_process_predictions(export_dir: pathlib.Path,
                           instances: Sequence[Dict[str, Any]]) -> np.ndarray:
    """serving_default called directly on canonical instances: the reference answers."""
    import tensorflow as tf

    loaded = _LOADED.get(str(export_dir))
    if loaded is None:
        loaded = _LOADED[str(export_dir)] = tf.saved_model.load(str(export_dir))
    function = loaded.signatures["serving_default"]
    _, specs = function.structured_input_signature
    tensors = {name: tf.constant([i[name] for i in instances], spec.dtype)
               for name, spec in specs.items()}
    return function(**tensors)[features.LABEL_KEY].numpy()


# ------------------------------------------------------------------------------------------------
# A real server process
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class RunningServer:
    process: server_forks.ForkedServer
    url: str
    log_path: pathlib.Path
    model_dir: pathlib.Path
    grpc_target: str = ""  # host:port of its gRPC API ("" when started with --grpc-port 0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def predict_url(self, version: Optional[int] = None) -> str:
        middle = f"/versions/{version}" if version is not None else ""
        return f"{self.url}/v1/models/{MODEL_NAME}{middle}:predict"


def start_server(model_dir: pathlib.Path, log_path: pathlib.Path, *flags: str,
                 timeout: float = 300.0, headers: Optional[Dict[str, str]] = None
                 ) -> RunningServer:
    """`python -m serving.server` on a free loopback port, returned once /healthz says 200;
    forked from a process that has imported TensorFlow already (tests/server_forks.py).

    The timeout is only how long to wait for a server that never comes up (it costs nothing
    when one does): long enough for TensorFlow to import on a loaded machine. The port is free
    when picked, but another process may bind it before the server does: then another is tried.
    `headers` go with the health checks (the bearer token of a server started with one).
    """
    for attempt in range(3):
        try:
            return _start_server_once(model_dir, log_path, flags, timeout, headers)
        except _PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# One per test run (tests/shared_zygote.py): it has imported TensorFlow, and each server is
# forked from it.
_ZYGOTE = shared_zygote.SharedZygote()


def spawn_server(argv: Sequence[str], log_path: pathlib.Path) -> server_forks.ForkedServer:
    """`python -m serving.server ARGV` (stdout and stderr to log_path), forked from the run's
    zygote; for code that starts and waits for its own servers (the benchmarks)."""
    return _ZYGOTE.spawn(list(argv), log_path)


def run_forked(module: str, argv: Sequence[str], log_path: pathlib.Path,
               timeout: float = 600.0) -> str:
    """`python -m MODULE ARGV` forked from the run's zygote (a process that has imported
    TensorFlow, the web stack and the server's modules, nothing else), waited for; its output
    (stdout and stderr, from log_path). A non-zero exit fails, with that output."""
    process = _ZYGOTE.spawn(list(argv), log_path, module=module)
    code = process.wait(timeout=timeout)
    output = log_path.read_text(errors="replace")
    assert code == 0, f"python -m {module} exited with {code}:\n{output}"
    return output


def pytest_unconfigure(config: pytest.Config) -> None:
    """The loaded exports are let go while TensorFlow can still free them (at interpreter exit
    their functions' finalizers fail)."""
    _LOADED.clear()
    gc.collect()


class _PortTaken(RuntimeError):
    pass


def _start_server_once(model_dir: pathlib.Path, log_path: pathlib.Path, flags: Sequence[str],
                       timeout: float, headers: Optional[Dict[str, str]]
                       ) -> RunningServer:
    port = free_port()
    grpc_port = "" if "--grpc-port" in flags else str(free_port())
    flags = [*flags, "--grpc-port", grpc_port] if grpc_port else list(flags)
    process = _ZYGOTE.spawn(["--model-dir", str(model_dir), "--model-name", MODEL_NAME,
                             "--port", str(port), *flags], log_path)
    server = RunningServer(process, f"http://127.0.0.1:{port}", log_path, model_dir,
                           f"127.0.0.1:{grpc_port}" if grpc_port else "")
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2, headers=headers) as health:  # one client: not one per poll
        while time.monotonic() < deadline:
            if process.poll() is not None:
                if "address already in use" in server.log().lower():
                    raise _PortTaken(server.log())
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
            try:
                if health.get(f"{server.url}/healthz").status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    stop_server(server)
    raise TimeoutError(f"server not healthy after {timeout} s:\n{server.log()}")


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture()
def server_factory(tmp_path: pathlib.Path) -> Iterator[Any]:
    """Starts servers for one test and stops them after it."""
    started: List[RunningServer] = []

    def start(model_dir: pathlib.Path, *flags: str,
              headers: Optional[Dict[str, str]] = None) -> RunningServer:
        server = start_server(model_dir, tmp_path / f"server{len(started)}.log", *flags,
                              headers=headers)
        started.append(server)
        return server

    yield start
    for server in started:
        stop_server(server)


MAX_INSTANCES, MAX_BODY_BYTES = 100, 30_000


@pytest.fixture(scope="session")
def shared_server(serving_models: ServingModels,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server over version 1 for every test that does not change its directory.

    Small limits (MAX_INSTANCES, MAX_BODY_BYTES) keep the oversized-request tests cheap.
    """
    root = tmp_path_factory.mktemp("shared_server")
    server = start_server(serving_models.serving_dir(root), root / "server.log",
                          "--max-instances", str(MAX_INSTANCES),
                          "--max-body-bytes", str(MAX_BODY_BYTES), "--poll-seconds", "0.5")
    yield server
    stop_server(server)


# ------------------------------------------------------------------------------------------------
# Traffic and waiting
# ------------------------------------------------------------------------------------------------

class Traffic:
    """A thread predicting one row continuously, recording every answer or failure.

    `pause` seconds between requests: a client asking again the moment it is answered keeps
    a core busy on each side (this process and the server), taken from the tests running
    beside it; paced, a load and a switch still see dozens of requests.
    """

    def __init__(self, url: str, headers: Optional[Dict[str, str]] = None,
                 pause: float = 0.02) -> None:
        self.url = url
        self.headers = headers
        self.pause = pause
        self.answers: List[float] = []
        self.failures: List[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as session:
            while not self._stop.is_set():
                try:
                    answer = session.post(self.url, json=COURSE_PAYLOAD, headers=self.headers)
                    if answer.status_code == 200:
                        self.answers.append(answer.json()["predictions"][0])
                    else:
                        self.failures.append(f"{answer.status_code} {answer.text}")
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                self._stop.wait(self.pause)


def server_predictions(server: RunningServer, instances: Sequence[Dict[str, Any]]
                       ) -> List[float]:
    """The server's answers to `instances` over REST, in order (a few requests at a time)."""
    answers: List[float] = []
    for start in range(0, len(instances), 50):  # the shared server's small batch limit
        answer = httpx.post(server.predict_url(),
                            json={"instances": list(instances[start:start + 50])}, timeout=60)
        assert answer.status_code == 200, answer.text
        answers.extend(answer.json()["predictions"])
    return answers


def wait_for(condition: Callable[[], bool], timeout: float = 300.0) -> None:
    """The timeout only bounds a condition that never comes (generous: a loaded machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError("condition not met in time")


def close_to(a: float, b: float) -> bool:
    """The same row through the same model, maybe in another batch (tests.tolerances)."""
    return abs(a - b) <= prediction_abs()


def statuses(session: httpx.Client) -> List[Dict[str, Any]]:
    """The model's version statuses, as GET /v1/models/<name> answers them."""
    return session.get(f"/v1/models/{MODEL_NAME}").json()["model_version_status"]


@pytest.fixture(scope="module")
def client(shared_server: RunningServer) -> Iterator[httpx.Client]:
    """A keep-alive client of the session's shared server."""
    with httpx.Client(base_url=shared_server.url, timeout=30) as result:
        yield result


def version_status(version: int, state: str = "AVAILABLE") -> Dict[str, Any]:
    """One model_version_status entry as TF Serving answers it for a version without error."""
    return {"version": str(version), "state": state,
            "status": {"error_code": "OK", "error_message": ""}}


def post_predict(client: httpx.Client, body: Any, version: Any = None,
                 model: str = MODEL_NAME) -> httpx.Response:
    """POST /v1/models/<model>[/versions/<version>]:predict with a JSON (or raw bytes) body."""
    import json

    middle = f"/versions/{version}" if version is not None else ""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(f"/v1/models/{model}{middle}:predict", content=content, headers=JSON)


def instance_example(instance: Dict[str, Any]):
    """An instance of the course's features as the tf.Example that TF Serving's Regress and the
    `serving_tf_example` signature take."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    for feature in features.FEATURES:
        value = instance[feature.name]
        if isinstance(feature, features.CategoricalFeature):
            example.features.feature[feature.name].bytes_list.value.append(value.encode())
        else:
            example.features.feature[feature.name].int64_list.value.append(int(value))
    return example
