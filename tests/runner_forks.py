"""Runs of a project copy's local_runner.py, forked from one process that has imported the
libraries already (tests/project_copy.py).

Importing TensorFlow, Beam, TFX, TFT, TFDV and TFMA is several CPU seconds of every run's
start, and the killed-run tests start a run for each kill. `python -m tests.runner_forks DIR`,
started in the copy with the copy on its path, imports those libraries once and nothing of the
project; then for each JSON request line on stdin (the run's arguments and log file) it forks a
child that runs `python local_runner.py ARGS` as the interpreter would (`runpy`, `__main__`),
in a session of its own (a process group to kill, as `start_new_session` gives), stdout and
stderr to the log. The project's code is imported in the child, from the copy's files as they
are then: an edit between two runs is the code the next run runs. The zygote answers with the
child's pid and, when the child ends, writes its exit code to DIR/<pid> (tests/server_forks.py,
whose zygote protocol this is).
"""
from __future__ import annotations

import importlib
import os
import pathlib
import runpy
import sys
import threading
from typing import Dict

from tests.server_forks import Request, Zygote, run_as_main, serve

# What local_runner.py imports before its first component, the project's modules aside.
LIBRARIES = ("tensorflow", "tf_keras", "apache_beam", "tensorflow_data_validation",
             "tensorflow_transform.beam", "tensorflow_model_analysis", "tfx.components",
             "tfx.orchestration.local.local_dag_runner", "ml_metadata")


def _run(request: Request) -> None:
    """In the forked child: `python local_runner.py ARGV > LOG 2>&1` in a new session."""
    os.setsid()

    def main() -> None:
        sys.argv = ["local_runner.py", *request["argv"]]
        runpy.run_path("local_runner.py", run_name="__main__")

    run_as_main(request["log"], main)


def zygote(exits: pathlib.Path) -> None:
    for name in LIBRARIES:
        importlib.import_module(name)
    if threading.active_count() != 1:  # a fork would copy their locks but not them
        print(f"{threading.active_count()} threads after the imports", file=sys.stderr)
        os._exit(1)
    serve(exits, _run)


def runner_forks(root: pathlib.Path, env: Dict[str, str]) -> Zygote:
    """The zygote of the project copy at `root` (its cwd; `env` puts the copy on the path);
    `spawn(ARGS, log)` is `python local_runner.py ARGS` there."""
    return Zygote("tests.runner_forks", root, env)


if __name__ == "__main__":
    zygote(pathlib.Path(sys.argv[1]))
