"""Session fixtures made once per test run, also when pytest-xdist splits the run over several
worker processes (`make test` does).

Each worker has its own session, so a session fixture would otherwise be made once per worker:
the shared pipeline runs or the trained serving models twice. Instead the first worker to need
one makes it in the directory all workers' temporary directories share, under a lock; the
others wait for the lock, then read the JSON description it left there. Made once, a fixture is
only read: the tests that use one must not change what it made.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import shutil
import traceback
from typing import Any, Callable, Iterator, Optional

import pytest


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Optional[pathlib.Path]:
    """The run's base temporary directory when under xdist (each worker's is inside it)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    return tmp_path_factory.getbasetemp().parent


@contextlib.contextmanager
def locked(path: pathlib.Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def made_once(name: str, tmp_path_factory: pytest.TempPathFactory,
              make: Callable[[pathlib.Path], Any]) -> Any:
    """`make(directory)`'s JSON-serializable result, `make` called once per run in all.

    A `make` that failed is not tried again by the next worker (the same failure, paid twice):
    that worker fails at once, pointing at the first failure's traceback.
    """
    root = _shared_root(tmp_path_factory)
    if root is None:
        return make(tmp_path_factory.mktemp(name))
    made, failed = root / f"{name}.json", root / f"{name}.failed"
    with locked(root / f"{name}.lock"):
        if made.exists():
            return json.loads(made.read_text())
        if failed.exists():
            raise RuntimeError(f"the session fixture {name!r} failed in another worker:\n"
                               f"{failed.read_text()}")
        directory = root / name
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
        try:
            value = make(directory)
        except BaseException:
            failed.write_text(traceback.format_exc())
            raise
        made.write_text(json.dumps(value))
        return value
