"""The monitor's distances on the server's own metrics: a server started with --monitoring-dir
shows the newest monitoring result's distances as gauges, with the textfile's names and labels,
and a missing or broken result never fails a scrape."""
from __future__ import annotations

import json
import pathlib
from typing import Any, Dict, Tuple

import httpx
from prometheus_client.parser import text_string_to_metric_families

from monitoring import cli
from monitoring.compare import Finding
from serving import metrics
from tests.serving_fixtures import ServingModels

pytest_plugins = ("tests.serving_fixtures",)
Gauges = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]
MONITORING = ("babyweight_monitoring_distance", "babyweight_monitoring_threshold",
              "babyweight_monitoring_drift_measured", "babyweight_monitoring_open_files")


def _parse(text: str) -> Gauges:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name in MONITORING}


def _scrape(server: Any) -> str:
    answer = httpx.get(server.url + metrics.PATH, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.text


def _write_run(root: pathlib.Path, stamp: str, findings, version: int,
               drift_not_measured: Any = None, open_files: int = 0) -> pathlib.Path:
    """A monitoring run's directory as `python -m monitoring` writes it (its own functions)."""
    out = root / stamp
    out.mkdir(parents=True)
    (out / "summary.json").write_text(json.dumps(
        cli.summary(findings, {}, version, "a window", {version: 100}, drift_not_measured,
                    open_files)))
    (out / "metrics.prom").write_text(cli._gauges(findings, version,
                                                  drift_not_measured is None, open_files))
    return out


def test_the_newest_result_is_on_the_servers_metrics(serving_models: ServingModels,
                                                     server_factory: Any,
                                                     tmp_path: pathlib.Path) -> None:
    results = tmp_path / "reports" / "monitoring"
    results.mkdir(parents=True)
    server = server_factory(serving_models.serving_dir(tmp_path), "--monitoring-dir",
                            str(results))
    text = _scrape(server)  # nothing written yet: no distances, and the scrape works
    assert not _parse(text) and "babyweight_serving_requests" in text

    _write_run(results, "20261201-100000-000000",
               [Finding("skew", "mother_age", "jensen_shannon_divergence", 0.5, 0.1)], 7)
    newest = _write_run(results, "20261201-110000-000000", [
        Finding("skew", "mother_age", "jensen_shannon_divergence", 0.02, 0.1),
        Finding("drift", "plurality", "l_infinity", 0.3, 0.05),
        Finding("prediction", "predicted_weight_pounds", "jensen_shannon_divergence", 0.01,
                0.1)], 8)
    (results / "20261201-120000-000000").mkdir()  # a run still writing: no summary yet
    scraped = _parse(_scrape(server))
    assert scraped == _parse((newest / "metrics.prom").read_text())  # the textfile's series
    key = ("babyweight_monitoring_distance",
           (("feature", "plurality"), ("kind", "drift"), ("version", "8")))
    assert scraped[key] == 0.3
    assert {dict(labels)["kind"] for name, labels in scraped
            if name == "babyweight_monitoring_distance"} == {"skew", "drift", "prediction"}
    assert scraped[("babyweight_monitoring_drift_measured", (("version", "8"),))] == 1

    unmeasured = _write_run(results, "20261201-113000-000000", [
        Finding("skew", "mother_age", "jensen_shannon_divergence", 0.02, 0.1)], 8,
        drift_not_measured="the previous window logged nothing", open_files=2)
    scraped = _parse(_scrape(server))
    assert scraped == _parse((unmeasured / "metrics.prom").read_text())
    assert scraped[("babyweight_monitoring_drift_measured", (("version", "8"),))] == 0
    assert scraped[("babyweight_monitoring_open_files", (("version", "8"),))] == 2

    broken = results / "20261201-130000-000000"
    broken.mkdir()
    (broken / "summary.json").write_text("{not json")
    text = _scrape(server)
    assert not _parse(text) and "babyweight_serving_requests" in text
    assert server.log().count("Cannot read the monitoring result") == 1
