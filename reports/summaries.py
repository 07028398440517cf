"""The numbers the index shows of a run, kept beside its page so the index needs no TensorFlow.

A run's data sizes and metrics are read from its artifacts with TensorFlow, TFDV and TFMA (their
imports alone take seconds, then every file is opened); the index of many runs shows a handful
of numbers of each. So the run's page, written from those reads, writes the numbers beside it
(`SUMMARY_FILE`) with the artifacts they were read from, and the index reads them back.

A summary is used only when it is of this format and was read from the artifacts the run
records now; otherwise (a page written by an older version, or while the run was still going)
the run is read the full way again and the summary rewritten. A reader that failed leaves no
summary, so the next index tries again instead of showing what the failure left out. Status,
blessing and push are read from ML Metadata at every index (`facts.recorded`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import pathlib
from typing import Any, Dict, List, Optional

from common.files import write_atomically
from reports import facts as facts_lib
from reports.facts import RunFacts
from reports.mlmd import RunRecord

logger = logging.getLogger(__name__)

SUMMARY_FILE = "report_summary.json"
FORMAT = 1
# The readers whose results a summary holds (facts.collect's names for them).
READERS = ("the statistics", "the evaluation metrics")
SOURCES = ((facts_lib.STATISTICS_NODE, "statistics"), (facts_lib.EVALUATOR_NODE, "evaluation"))


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What the index shows of one run (the attributes pages' helpers read of a RunFacts)."""

    record: RunRecord
    status: str
    succeeded: bool
    blessed: Optional[bool]
    push: Dict[str, Any]
    split_sizes: Dict[str, int]
    rmse: Optional[float]  # the overall slice's; None: no metrics
    baseline_rmse: Optional[float]
    has_metrics: bool


def summary_path(page: pathlib.Path) -> pathlib.Path:
    """Beside the run's page."""
    return pathlib.Path(page).with_name(SUMMARY_FILE)


def sources(record: RunRecord) -> Dict[str, List[Any]]:
    """Per component the numbers come from: its state and the artifact it wrote (or reused)."""
    found = {}
    for node, key in SOURCES:
        component, artifact = record.component(node), record.output(node, key)
        found[node] = [component.state if component else None,
                       artifact.id if artifact else None]
    return found


def _number(value: Optional[float]) -> Optional[float]:
    """NaN (a metric TFMA did not compute) is shown as missing, so it is kept as None."""
    return None if value is None or math.isnan(value) else float(value)


def _stored(facts: RunFacts) -> Dict[str, Any]:
    overall = facts.overall
    return {"format": FORMAT, "sources": sources(facts.record),
            "split_sizes": {split: int(size) for split, size in facts.split_sizes.items()},
            "rmse": _number(overall.rmse) if overall else None,
            "baseline_rmse": _number(overall.baseline_rmse) if overall else None,
            "has_metrics": bool(facts.metrics)}


def _summary(recorded: RunFacts, stored: Dict[str, Any]) -> RunSummary:
    return RunSummary(record=recorded.record, status=recorded.status,
                      succeeded=recorded.succeeded, blessed=recorded.blessed, push=recorded.push,
                      split_sizes=dict(stored["split_sizes"]), rmse=stored["rmse"],
                      baseline_rmse=stored["baseline_rmse"],
                      has_metrics=bool(stored["has_metrics"]))


def of(facts: RunFacts) -> RunSummary:
    """The summary of fully read facts (facts.collect)."""
    return _summary(facts, _stored(facts))


def write(page: pathlib.Path, facts: RunFacts) -> None:
    """Writes the summary beside `page`, or removes an old one when a reader failed."""
    path = summary_path(page)
    if any(reader in facts.unread for reader in READERS):
        path.unlink(missing_ok=True)
        return
    write_atomically(path, json.dumps(_stored(facts), indent=1) + "\n")


def read(page: pathlib.Path, record: RunRecord) -> Optional[RunSummary]:
    """The summary beside `page`, or None when there is none that holds for `record` now."""
    path = summary_path(page)
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning("Could not read %s (%s); reading run %s from its artifacts", path, error,
                       record.name)
        return None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        return None
    if stored.get("sources") != sources(record):
        logger.info("%s was written from other artifacts than run %s records now", path,
                    record.name)
        return None
    recorded = facts_lib.recorded(record)
    try:
        return _summary(recorded, stored)
    except (KeyError, TypeError, ValueError) as error:
        logger.warning("%s is incomplete (%s); reading run %s from its artifacts", path,
                       error, record.name)
        return None
