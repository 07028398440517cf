"""One TensorBoard logdir for every run, its runs named by the pipeline runs.

The Trainer writes its TensorBoard events where TFX tells it (`fn_args.model_run_dir`), a
directory named by ML Metadata's execution id: `--logdir` on TFX's `Trainer/model_run` would
show runs called `9/train`, `12/validation`. After each run, its report links that directory
into `<runs>/tensorboard/<run name>` (the run name is the runner's timestamp, as in
`runs/reports/<run name>`), so `tensorboard --logdir runs/tensorboard` shows
`20261127-025114/train` and `20261127-025114/validation` for every run that trained.

A link, not a copy: the logs stay in the artifact TFX and ML Metadata know about, and the link
is relative, so moving `runs/` as a whole keeps it working. Where links cannot be made (some
file systems), the logs are copied, with a note of where they came from. A run whose Trainer
came from the cache shows under the name of the run that trained it, once.
"""
from __future__ import annotations

import logging
import os
import pathlib
import shutil
from typing import Optional

logger = logging.getLogger(__name__)

LOGDIR_NAME = "tensorboard"
SOURCE_FILE = "copied_from.txt"  # in a copy: the model_run directory it came from


def logdir_for(reports_dir: pathlib.Path) -> pathlib.Path:
    """The TensorBoard logdir beside the reports directory: runs/reports -> runs/tensorboard."""
    return pathlib.Path(reports_dir).resolve().parent / LOGDIR_NAME


def _source_of(entry: pathlib.Path) -> Optional[pathlib.Path]:
    if entry.is_symlink():
        return entry.resolve()
    note = entry / SOURCE_FILE
    return pathlib.Path(note.read_text().strip()).resolve() if note.is_file() else None


def link_training_logs(logdir: pathlib.Path, run_name: str,
                       model_run_uri: Optional[str]) -> Optional[str]:
    """The TensorBoard run name this run's training logs show under, linking them if needed.

    None when there are no local logs (the Trainer did not run, or they live on Cloud Storage),
    or when another run's logs already hold that name.
    """
    if not model_run_uri or not pathlib.Path(model_run_uri).is_dir():
        return None
    source = pathlib.Path(model_run_uri).resolve()
    logdir.mkdir(parents=True, exist_ok=True)
    for entry in sorted(logdir.iterdir()):
        if _source_of(entry) == source:
            return entry.name
    target = logdir / run_name
    if target.exists() or target.is_symlink():
        logger.warning("Not linking %s into TensorBoard's logdir: %s already holds other logs",
                       source, target)
        return None
    try:
        target.symlink_to(os.path.relpath(source, logdir), target_is_directory=True)
    except OSError:
        shutil.copytree(source, target)
        (target / SOURCE_FILE).write_text(f"{source}\n")
    return run_name
