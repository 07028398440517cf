"""Log setup for babyweight's commands: our progress lines, TFX's per-component progress, warnings.

TFX, Beam and TensorFlow log a great deal at INFO; without --verbose a run shows only what a
person follows a run by: which component runs, which is reused from cache, and every warning.
"""
from __future__ import annotations

import logging
import os
import warnings

_PROGRESS_PREFIXES = ("Component ", "A cached execution", "Skipping component")
_NOISE = (
    "direct_num_workers is not equal to 1",
    "property_predicate is not supported",
    "python-snappy",
    "is deprecated and will be removed",
    "Tables initialized inside a tf.function",
    "No iterator is returned by the process method",
    "does not have payload_format custom property",
)
# The commands' line format (the server's access log keeps it: serving/server.py).
FORMAT, DATE_FORMAT = "%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"


class LibraryNoiseFilter(logging.Filter):
    """Drops the libraries' warnings that ask nothing of a user (a deprecation inside TFMA,
    Beam's note on its own worker count): for the commands that log warnings only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("babyweight"):
            return True
        message = record.getMessage()
        return not any(noise in message for noise in _NOISE)


class _ProgressFilter(LibraryNoiseFilter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("babyweight"):
            return True
        if not super().filter(record):
            return False
        if record.levelno >= logging.WARNING:
            return True
        return record.getMessage().startswith(_PROGRESS_PREFIXES)


def setup(verbose: bool = False) -> None:
    """Configures logging for a command-line entry point."""
    # Level 3 hides the CUDA-plugin registration noise TensorFlow prints on CPU-only machines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    logging.basicConfig(level=logging.INFO, format=FORMAT, datefmt=DATE_FORMAT, force=True)
    if not verbose:
        warnings.filterwarnings("ignore")
        for handler in logging.getLogger().handlers:
            handler.addFilter(_ProgressFilter())
