"""What the analysis notebooks open: a run from ML Metadata, chosen by environment variables.

BABYWEIGHT_METADATA names the store (default runs/metadata.sqlite, from the project root) and
BABYWEIGHT_RUN a run (id, reports directory name or unique prefix; default: the newest run
that got as far as the artifact the notebook needs), so the same notebook opens a test run
headless and the latest real run by hand.
"""
from __future__ import annotations

import os
import pathlib
from typing import Optional

from reports import mlmd

METADATA_VARIABLE = "BABYWEIGHT_METADATA"
RUN_VARIABLE = "BABYWEIGHT_RUN"
DEFAULT_METADATA = pathlib.Path("runs") / "metadata.sqlite"
PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent


def metadata_path() -> pathlib.Path:
    path = pathlib.Path(os.environ.get(METADATA_VARIABLE, str(DEFAULT_METADATA)))
    if not path.is_absolute() and not path.exists():
        path = PROJECT_ROOT / path  # a notebook's cwd is notebooks/, the default is the root's
    return path


def latest_run(node_id: str, key: str, run_id: Optional[str] = None) -> mlmd.RunRecord:
    """The named run, or the newest one with output `key` of `node_id`."""
    runs = mlmd.list_runs(mlmd.open_store(metadata_path()))
    run_id = run_id or os.environ.get(RUN_VARIABLE) or None
    if run_id is not None:
        return mlmd.find_run(runs, run_id)
    for record in runs:
        if record.output(node_id, key) is not None:
            return record
    raise LookupError(f"no run in {metadata_path()} has {node_id}'s {key!r}; run the pipeline "
                      "first (`make`)")
