"""Analyst reports in the browser: one self-contained HTML page per pipeline run, an index of
runs and run-vs-run comparisons, rebuilt at any time from the ML Metadata store.

    .venv/bin/python -m reports --help

`publish` and `Published` are loaded on first use, so the pipeline's components that use one
reader of this package (the EDA report, the anomalies, the evaluation results) do not import the
whole publisher when the DAG is built.
"""
from __future__ import annotations

import pathlib
from typing import Any

import common  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)

__all__ = ["publish", "Published"]
# The pages' templates; the exploratory report's is read at run time, so the EdaReport
# component's cache key covers it (pipelines/pipeline.py).
TEMPLATES = pathlib.Path(__file__).resolve().parent / "templates"
EDA_TEMPLATE = TEMPLATES / "eda.html.j2"


def __getattr__(name: str) -> Any:
    if name in __all__:
        from reports import publisher

        return getattr(publisher, name)
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
