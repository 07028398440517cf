"""The monitor's distances as gauges in the server's metrics, read at scrape time.

`python -m monitoring` writes each result to <reports-dir>/monitoring/<UTC time>/summary.json
(and a Prometheus textfile beside it). A server started with --monitoring-dir pointing there
exposes the newest result's distances and thresholds, whether drift was measured and how many
open log files, or files deleted while read, may hold records the window lacks, on /monitoring/prometheus/metrics, with the
same names and labels as that textfile (kind, feature, version), plus the time the result was
written, so an alert can also fire when monitoring stopped running. Reading happens only when
Prometheus scrapes, and a file is parsed again only when a newer one appears. A missing or
unreadable result never fails a scrape: it shows no distances, logged once per file.
"""
from __future__ import annotations

import json
import logging
import pathlib
from typing import Any, Dict, Iterator, List, Optional, Tuple

from prometheus_client.core import GaugeMetricFamily

from common import run_folders

LOGGER = logging.getLogger("babyweight.serving")
SUMMARY = "summary.json"  # monitoring/cli.py's result file in each run's directory
_LABELS = ["kind", "feature", "version"]


def newest_summary(directory: pathlib.Path) -> Optional[pathlib.Path]:
    """The newest run's summary.json, by the time its directory's name holds."""
    try:
        runs = run_folders.oldest_first(p for p in directory.iterdir()
                                        if (p / SUMMARY).is_file())
    except OSError:
        return None
    return runs[-1] / SUMMARY if runs else None


class MonitoringGauges:
    """A prometheus-client collector over the newest monitoring result in `directory`."""

    def __init__(self, directory: str) -> None:
        self.directory = pathlib.Path(directory)
        self._cached: Tuple[Optional[pathlib.Path], float, Dict[str, Any]] = (None, 0.0, {})
        self._reported: set = set()

    def _read(self) -> Tuple[Dict[str, Any], float]:
        path = newest_summary(self.directory)
        if path is None:
            return {}, 0.0
        try:
            written = path.stat().st_mtime
            if self._cached[0] == path and self._cached[1] == written:
                return self._cached[2], written
            summary = json.loads(path.read_text())
            if not isinstance(summary.get("findings"), list):
                raise ValueError("no 'findings' list")
        except (OSError, ValueError, AttributeError) as error:
            if path not in self._reported:
                self._reported.add(path)
                LOGGER.warning("Cannot read the monitoring result %s (%s): its distances are "
                               "not in the metrics", path, error)
            return {}, 0.0
        self._cached = (path, written, summary)
        return summary, written

    def collect(self) -> Iterator[GaugeMetricFamily]:
        summary, written = self._read()
        distance = GaugeMetricFamily(
            "babyweight_monitoring_distance",
            "A TFDV distance between served traffic and its reference (newest monitoring run)",
            labels=_LABELS)
        threshold = GaugeMetricFamily(
            "babyweight_monitoring_threshold", "The distance's declared threshold",
            labels=_LABELS)
        version = str(summary.get("version", ""))
        for finding in _findings(summary):
            labels = [str(finding["kind"]), str(finding["feature"]), version]
            distance.add_metric(labels, float(finding["value"]))
            threshold.add_metric(labels, float(finding["threshold"]))
        yield distance
        yield threshold
        for key, kind, name, description in _VERSION_GAUGES:
            if isinstance(summary.get(key), kind) and not (
                    kind is int and isinstance(summary[key], bool)):
                gauge = GaugeMetricFamily(name, description, labels=["version"])
                gauge.add_metric([version], int(summary[key]))
                yield gauge
        if written:
            yield GaugeMetricFamily(
                "babyweight_monitoring_last_run_timestamp_seconds",
                "When the newest monitoring result was written (Unix time)", value=written)


# summary.json key, its type, and the gauge of one value per version it becomes (monitoring/
# cli.py's textfile writes the same): without drift_measured, no drift distance would read as
# no drift; open_files counts request-log files still open that may hold records from before
# the window's end, which the window lacks (its distances are partial); trimmed_files_in_window
# those opened before it that the server deleted while monitoring read them (lost for good).
_VERSION_GAUGES = (
    ("drift_measured", bool, "babyweight_monitoring_drift_measured",
     "1 when drift against the previous window was measured, 0 when that window logged nothing"),
    ("open_files", int, "babyweight_monitoring_open_files",
     "Request-log files still open that may hold records from before the window's end, which "
     "the window lacks"),
    ("trimmed_files_in_window", int, "babyweight_monitoring_trimmed_files",
     "Request-log files opened before the window's end that the server deleted while they were "
     "read: records the window lacks for good"),
)


def _findings(summary: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The findings that carry what a gauge needs; others are skipped."""
    wanted = ("kind", "feature", "value", "threshold")
    return [f for f in summary.get("findings", ())
            if isinstance(f, dict) and all(k in f for k in wanted)
            and isinstance(f["value"], (int, float)) and isinstance(f["threshold"], (int, float))]
