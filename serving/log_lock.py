"""A request-log directory's publish lock: a reader sees all of a published window or none.

Why: an export (monitoring/from_bigquery.py) or a batch prediction (serving/batch_log.py)
completes its files under staged names and `publish`es them with one rename per file. Those
renames, and the trim after them, hold this lock exclusively; monitoring holds it shared while it
lists and reads the log, so it never counts part of a window being published. The writer's own
lock (serving/batch_log.py's `held`) is held for the whole export or batch prediction, so a
reader does not take that one: it waits only for a publish under way, a few renames. The live
server writes its files one at a time (each complete under one rename) and takes neither lock.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
from typing import Iterator, Optional

from common.locks import flock_within

LOCK_NAME = ".publish.lock"
WAIT_SECONDS = 60.0  # a publish is renames; one holding it longer is stuck, not slow


def _open(directory: pathlib.Path) -> Optional[int]:
    """The lock file's descriptor, made if missing; None when the directory is not there, or
    the reader cannot write it and no publish ever made the file (there is none to wait for)."""
    path = directory / LOCK_NAME
    try:
        return os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except (PermissionError, OSError):
        try:
            return os.open(path, os.O_RDONLY)
        except OSError:
            return None


@contextlib.contextmanager
def publishing(directory: pathlib.Path) -> Iterator[None]:
    """Held exclusively while staged files get their complete names; waits for readers, whose
    hold is one listing and reading of the log."""
    handle = _open(directory)
    try:
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        if handle is not None:
            os.close(handle)  # the lock goes with it; the file stays (removing it would race)


@contextlib.contextmanager
def reading(directory: pathlib.Path, wait_seconds: float = WAIT_SECONDS) -> Iterator[None]:
    """Held shared while the log is listed and read: waits for a publish under way, up to
    `wait_seconds`, then TimeoutError saying what it waited for."""
    handle = _open(directory)
    try:
        if handle is not None and not flock_within(handle, fcntl.LOCK_SH, wait_seconds):
            raise TimeoutError(
                f"an export or batch prediction has been publishing its files into "
                f"{directory} for over {wait_seconds:g} s (it holds "
                f"{directory / LOCK_NAME}): its window would be read in part; rerun once "
                "it is done")
        yield
    finally:
        if handle is not None:
            os.close(handle)
