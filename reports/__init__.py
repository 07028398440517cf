"""Analyst reports in the browser: one self-contained HTML page per pipeline run, an index of
runs and run-vs-run comparisons, rebuilt at any time from the ML Metadata store.

    .venv/bin/python -m reports --help
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from reports.publisher import Published, publish  # noqa: E402

__all__ = ["publish", "Published"]
