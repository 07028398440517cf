"""Every command block of README.md runs as written: the commands, how each is checked, and the
copy of the project they run in (tests/test_readme_commands.py and tests/test_readme_runs.py).

The commands are read from README.md's ```bash blocks; COMMANDS below says how each one is
checked, and a test keeps the two lists equal, so a new README command needs a check here.
They run in a copy of the project in a temporary directory (its `.venv` a link to this one's),
so their default paths (data/, runs/, serving_model/, relative to the project) land in the copy,
on small data. Where a command cannot run as is, the check says why and what it does instead:
`make` targets would install the environment or run for minutes (`make -n` shows what they
would run), servers run until stopped (started, asked, stopped), the README's example run id
and port name things of the author's machine (replaced by this copy's), and `submit` talks to
Google Cloud (its client is faked at the call, as in tests/test_vertex_runner.py).

The commands fall in two parts, each run in its own copy by its own test module, so that two
test workers share them: SERVING (the `--source` run and what reads its served model) and RUNS
(the span windows' runs and what reads the runs' reports). A command both need, the generator,
runs in both copies.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import time
from typing import Any, Dict, List, Optional, Tuple

import duckdb
import httpx
import pytest

from pipelines.config import PROJECT_ROOT
from tests.conftest import SMALL_ROWS
from tests.serving_fixtures import start_server, stop_server

README = PROJECT_ROOT / "README.md"
RUN_ID_EXAMPLE = "20261127-025114"
# How long a command may take before it counts as hung (a pipeline run on a loaded machine).
COMMAND_TIMEOUT_S = 900
SERVING, RUNS = "serving", "runs"
BOTH = (SERVING, RUNS)


@dataclasses.dataclass(frozen=True)
class Check:
    how: str  # "run", "make -n", "server", "curl", "fake cloud"
    why: str = ""
    # README text -> what runs instead, each with its reason in `why`.
    substitute: Dict[str, str] = dataclasses.field(default_factory=dict)
    expect: str = ""  # text the output must hold
    refuse: str = ""  # text the output must not hold (a library's noise a user would read)
    exit_codes: Tuple[int, ...] = (0,)  # what the command may exit with, and why in `why`
    parts: Tuple[str, ...] = (SERVING,)  # the copies it runs in (see the module's docstring)


COURSE_ROW = {"is_male": "True", "mother_age": 26.0, "plurality": "Single(1)",
              "gestation_weeks": 39}

COMMANDS: Dict[str, Check] = {
    "make": Check("make -n", "installs the environment, then runs the pipeline",
                  expect="local_runner.py"),
    "make test": Check("make -n", "installs, then runs this very suite", expect="-m pytest"),
    ".venv/bin/python -m warehouse.generator --rows 1000000 --out data/natality.duckdb "
    "--overwrite": Check("run", "small data", substitute={"--rows 1000000": f"--rows {SMALL_ROWS}"},
                         parts=BOTH),
    ".venv/bin/python local_runner.py --source 'exports/natality-*.parquet'":
        Check("run", expect="Pipeline finished"),
    ".venv/bin/python local_runner.py --num-spans 24": Check(
        "run", "the first run of its copy, judged on the RMSE bound alone, trained on two years: "
        "not being blessed (exit 3) is a right answer too", expect="Pipeline finished",
        exit_codes=(0, 3), parts=(RUNS,)),
    ".venv/bin/python local_runner.py --first-span 200301 --last-span 200612": Check(
        "run", "gated against the window above if it was blessed: not being blessed (exit 3) is "
        "a right answer too", expect="Pipeline finished", exit_codes=(0, 3), parts=(RUNS,)),
    ".venv/bin/python -m reports.eda --database data/natality.duckdb --out eda.html":
        Check("run"),
    ".venv/bin/tensorboard --logdir runs/tensorboard":
        Check("server", "a server: on a port the system picks (tests/test_tensorboard.py reads "
              "its scalars)", parts=(RUNS,)),
    "make serve": Check("make -n", "runs the server until stopped (the curl commands below ask "
                        "a server started the same way)",
                        expect="serving.server --model-dir serving_model/babyweight"),
    "curl -s localhost:8501/v1/models/babyweight":
        Check("curl", "port 8501 may be taken on a test machine: a free port instead",
              expect='"AVAILABLE"'),
    "curl -s -H 'Content-Type: application/json' -d '" + json.dumps({"instances": [COURSE_ROW]})
    + "' "
    "localhost:8501/v1/models/babyweight:predict":
        Check("curl", "port 8501 may be taken on a test machine: a free port instead",
              expect='"predictions"'),
    ".venv/bin/python -m serving.local_predict --model-dir serving_model/babyweight "
    "--json-instances instances.jsonl": Check("run", expect="weight_pounds"),
    ".venv/bin/python -m serving.batch_predict --model-dir serving_model/babyweight "
    "--input births.csv --output predictions.jsonl": Check("run"),
    ".venv/bin/python -m serving.batch_predict --model-dir serving_model/babyweight "
    "--warehouse data/natality.duckdb --split test --output predictions.csv": Check("run"),
    ".venv/bin/python vertex_runner.py compile --project my-project --bucket my-bucket":
        Check("run"),
    ".venv/bin/python vertex_runner.py submit --project my-project --bucket my-bucket":
        Check("fake cloud", "submits to Vertex AI: its client is faked at the call"),
    f".venv/bin/python -m reports run --run-id {RUN_ID_EXAMPLE}":
        Check("run", "the README's run id is an example: this copy's first run instead",
              substitute={RUN_ID_EXAMPLE: "{run_a}"}, refuse="deprecated", parts=(RUNS,)),
    ".venv/bin/python -m reports index": Check("run", parts=(RUNS,)),
    ".venv/bin/python -m reports compare RUN_A RUN_B":
        Check("run", "RUN_A and RUN_B stand for run ids: this copy's two runs",
              substitute={"RUN_A": "{run_a}", "RUN_B": "{run_b}"}, parts=(RUNS,)),
    ".venv/bin/jupyter nbconvert --to html --execute notebooks/model_analysis.ipynb":
        Check("run", "the notebook opens the copy's runs/metadata.sqlite (its default)",
              expect="model_analysis.html", parts=(RUNS,)),
    ".venv/bin/python -m monitoring --logs runs/request_log --model-dir serving_model/babyweight "
    "--window 1h": Check(
        "run", "the copy's server ran without --request-log-dir, so there is no log: the command "
        "must say so (tests/test_monitoring.py runs it on a real log)",
        expect="no complete request-log files", exit_codes=(1,)),
    # Last: it adds months to the warehouse the commands above read.
    ".venv/bin/python -m warehouse.months --database data/natality.duckdb --months 12 "
    "--rows-per-month 2000 --older-mothers 5 --multiples-factor 4 --gestation-shift -2":
        Check("run", expect="Appended 12 months", parts=(RUNS,)),
}


def readme_commands(text: str) -> List[str]:
    """The commands of the ```bash blocks, as the shell reads them: comments dropped, a
    trailing backslash joining lines, a quoted string spanning lines kept whole; each returned
    normalized (shlex-joined words, JSON bodies re-serialized compactly)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            pending = f"{pending}\n{line}" if pending else line
            try:
                words = shlex.split(pending, comments=True)
            except ValueError:  # an open quote: the command goes on
                continue
            pending = ""
            if words:
                commands.append(normalize(words))
        assert not pending, f"unterminated command in README.md: {pending!r}"
    return commands


def normalize(words: List[str]) -> str:
    """Words as one comparable string; a JSON body compared as JSON, whatever its spacing."""
    return json.dumps([json.dumps(json.loads(w)) if w.startswith("{") else w for w in words])


# --------------------------------------------------------------------------------------------
# The commands themselves, in a copy of the project
# --------------------------------------------------------------------------------------------

IGNORED = shutil.ignore_patterns(".git", ".venv", ".venv-tools", "data", "runs", "serving_model",
                                 "__pycache__", ".pytest_cache", "*.egg-info")


@dataclasses.dataclass
class Copy:
    root: pathlib.Path
    env: Dict[str, str]

    def run(self, command: str, check: Check) -> str:
        for text, replacement in check.substitute.items():
            command = command.replace(text, replacement.format(**self.run_ids()))
        result = subprocess.run(shlex.split(command), cwd=self.root, env=self.env,
                                capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        output = result.stdout + result.stderr
        assert result.returncode in check.exit_codes, (
            f"{command} exited {result.returncode}:\n{output[-4000:]}")
        return output

    def run_ids(self) -> Dict[str, str]:
        names = sorted(p.name for p in (self.root / "runs" / "reports").glob("2*"))
        return {"run_a": names[0], "run_b": names[-1]} if names else {}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Copy:
    """This project's files in a temporary directory, its inputs beside them: what the README's
    commands read (an export of the warehouse, instances.jsonl, births.csv). One per test module
    that uses it (`pytest_plugins`), so the two modules' runs share no files."""
    root = tmp_path_factory.mktemp("readme") / "babyweight"
    shutil.copytree(PROJECT_ROOT, root, ignore=IGNORED)
    (root / ".venv").symlink_to((PROJECT_ROOT / ".venv").resolve(), target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(root), "TF_USE_LEGACY_KERAS": "1",
           "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "3"}
    (root / "instances.jsonl").write_text(json.dumps(COURSE_ROW) + "\n")
    (root / "births.csv").write_text(",".join(COURSE_ROW) + "\n"
                                     + ",".join(str(v) for v in COURSE_ROW.values()) + "\n")
    return Copy(root, env)


def _export_parquet(copy: Copy) -> None:
    (copy.root / "exports").mkdir(exist_ok=True)
    with duckdb.connect(str(copy.root / "data" / "natality.duckdb"), read_only=True) as con:
        con.execute(f"COPY natality TO '{copy.root / 'exports' / 'natality-0.parquet'}' "
                    "(FORMAT PARQUET)")


def _make_dry_run(copy: Copy, command: str, check: Check) -> None:
    result = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=copy.root,
                            env=copy.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert check.expect in result.stdout, result.stdout


def _tensorboard(copy: Copy, command: str) -> None:
    log = copy.root / "tensorboard.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([*shlex.split(command), "--host", "127.0.0.1", "--port", "0"],
                                   cwd=copy.root, env=copy.env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        runs: List[str] = []
        while time.monotonic() < deadline and not runs:
            assert process.poll() is None, log.read_text()
            found = re.search(r"TensorBoard \S+ at (http://127\.0\.0\.1:\d+)/", log.read_text())
            if found:
                runs = httpx.get(f"{found.group(1)}/data/runs", timeout=30).json()
            time.sleep(0.5)
        assert f"{copy.run_ids()['run_a']}/validation" in runs, (runs, log.read_text())
    finally:
        process.terminate()
        process.wait(timeout=60)


def _submit_with_a_fake_client(copy: Copy, command: str, monkeypatch: Any) -> None:
    import vertex_runner

    jobs: List[Dict[str, Any]] = []

    class FakePipelineJob:
        def __init__(self, **kwargs: Any) -> None:
            jobs.append(kwargs)

        def submit(self, **kwargs: Any) -> None:
            jobs.append({"submitted": kwargs})

    monkeypatch.setattr("google.cloud.aiplatform.PipelineJob", FakePipelineJob)
    monkeypatch.setattr(vertex_runner, "DEFAULT_OUTPUT",
                        copy.root / vertex_runner.DEFAULT_OUTPUT.relative_to(PROJECT_ROOT))
    argv = shlex.split(command)
    assert vertex_runner.main(argv[argv.index("vertex_runner.py") + 1:]) == 0
    assert jobs[0]["project"] == "my-project" and "submitted" in jobs[1]


def run_part(copy: Copy, part: str, monkeypatch: Any) -> None:
    """Runs the README commands of `part` in `copy`, in the README's order, each checked."""
    server: Optional[Any] = None
    try:
        for command, check in COMMANDS.items():
            if part not in check.parts:
                continue
            if check.how == "make -n":
                _make_dry_run(copy, command, check)
            elif check.how == "server":
                _tensorboard(copy, command)
            elif check.how == "fake cloud":
                _submit_with_a_fake_client(copy, command, monkeypatch)
            elif check.how == "curl":
                if server is None:
                    server = start_server(copy.root / "serving_model" / "babyweight",
                                          copy.root / "server.log")
                port = server.url.rsplit(":", 1)[1]
                output = copy.run(command.replace("localhost:8501", f"localhost:{port}"), check)
                assert check.expect in output, output
            else:
                output = copy.run(command, check)
                assert check.expect in output, output[-4000:]
                assert not check.refuse or check.refuse not in output, output[-4000:]
                if command.startswith(".venv/bin/python -m warehouse.generator"):
                    _export_parquet(copy)  # what the `--source` command reads
    finally:
        if server is not None:
            stop_server(server)
