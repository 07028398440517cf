"""Monitoring runs' folder names: written by `python -m monitoring`, read back by the server's
gauges and the reports index, which take the newest run by the time a name holds.

A name is the run's UTC time. Folders written before names were UTC hold the machine's local
time without saying so; they are read as local time, so that after the change a newer run is
still taken for the newest, also east of UTC, where an older local-time name sorts after it.
"""
from __future__ import annotations

import datetime
import pathlib
from typing import Iterable, List, Tuple

RUN_NAME = "%Y%m%d-%H%M%S-%f-UTC"
_LOCAL_NAME = "%Y%m%d-%H%M%S-%f"  # the earlier names: local time


def new_run_name() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime(RUN_NAME)


def run_time(folder: pathlib.Path) -> float:
    """When the run in `folder` was made (Unix time), from its name; a folder named otherwise,
    by the change time of what it holds."""
    try:
        named = datetime.datetime.strptime(folder.name, RUN_NAME)
        return named.replace(tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        pass
    try:
        return datetime.datetime.strptime(folder.name, _LOCAL_NAME).timestamp()  # local time
    except ValueError:
        return folder.stat().st_mtime


def oldest_first(folders: Iterable[pathlib.Path]) -> List[pathlib.Path]:
    def key(folder: pathlib.Path) -> Tuple[float, str]:
        return run_time(folder), folder.name

    return sorted(folders, key=key)
