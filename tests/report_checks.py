"""What the report tests share: ML Metadata read directly, and a browser that can only read files.

The numbers a page shows are checked against ML Metadata and TFMA read here, not through
reports/; every page is opened with every non-file request aborted and counted.
"""
from __future__ import annotations

import contextlib
import dataclasses
import pathlib
from typing import Any, Dict, Iterator, List

import pytest

from tests.browser import SCREENSHOTS, launched_chromium


# --------------------------------------------------------------------------------------------
# What the pipeline recorded, read straight from ML Metadata and TFMA (not through reports/).
# --------------------------------------------------------------------------------------------

def _store(metadata_path: pathlib.Path):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def run_ids_newest_first(metadata_path: pathlib.Path) -> List[str]:
    runs = _store(metadata_path).get_contexts_by_type("pipeline_run")
    return [c.name for c in sorted(runs, key=lambda c: c.create_time_since_epoch, reverse=True)]


def evaluation_uris(metadata_path: pathlib.Path) -> List[str]:
    """The Evaluator's outputs, oldest first (runs 1 and 2; run 3 never got there)."""
    artifacts = _store(metadata_path).get_artifacts_by_type("ModelEvaluation")
    return [a.uri for a in sorted(artifacts, key=lambda a: a.id)]


def anomalies_artifact(metadata_path: pathlib.Path):
    artifacts = _store(metadata_path).get_artifacts_by_type("ExampleAnomalies")
    return max((a for a in artifacts if "ExampleValidator" in a.uri), key=lambda a: a.id)


# --------------------------------------------------------------------------------------------
# A browser that can only read files.
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Visit:
    """One page load with everything that went wrong while it loaded."""

    page: Any
    console_errors: List[str] = dataclasses.field(default_factory=list)
    failed_requests: List[str] = dataclasses.field(default_factory=list)
    blocked_requests: List[str] = dataclasses.field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.blocked_requests, f"the page tried the network: {self.blocked_requests}"
        assert not self.failed_requests, f"failed requests: {self.failed_requests}"
        assert not self.console_errors, f"console errors: {self.console_errors}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched_chromium("the reports in a browser")


@contextlib.contextmanager
def visit(browser: Any, path: pathlib.Path) -> Iterator[Visit]:
    """Opens `path` in a fresh context where every non-file request is aborted and counted."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = Visit(page)

    def only_files(route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            seen.blocked_requests.append(url)
            route.abort()

    context.route("**/*", only_files)
    page.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.console_errors.append(str(e)))
    page.on("requestfailed", lambda r: seen.failed_requests.append(r.url))
    page.goto(pathlib.Path(path).resolve().as_uri(), wait_until="load")
    try:
        yield seen
    finally:
        context.close()


def screenshot(seen: Visit, name: str, capsys: pytest.CaptureFixture) -> pathlib.Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    out = SCREENSHOTS / f"{name}.png"
    seen.page.screenshot(path=str(out), full_page=True)
    with capsys.disabled():
        print(f"\nscreenshot: {out}")
    return out


def assert_charts_rendered(page: Any, minimum: int) -> int:
    """Every chart is an SVG with drawn content and a real size on screen."""
    charts = page.locator("figure.chart svg")
    count = charts.count()
    assert count >= minimum, f"{count} charts, expected at least {minimum}"
    for index in range(count):
        chart = charts.nth(index)
        box = chart.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 60, f"chart {index} has no size"
        drawn = chart.evaluate("svg => svg.querySelectorAll('path, use, rect, text').length")
        assert drawn > 5, f"chart {index} is empty"
    return count


def column(page: Any, table: str, name: str, body: str = "tbody.rows") -> List[float]:
    return [float(v) for v in page.locator(f"{table} {body} td[data-col={name}]")
            .evaluate_all("cells => cells.map(c => c.getAttribute('data-value'))")]


def table_metrics(page: Any, table: str) -> Dict[str, Dict[str, str]]:
    """slice -> {column: data-value} of every row of a slice table."""
    return page.locator(f"{table} tr[data-slice]").evaluate_all(
        """rows => Object.fromEntries(rows.map(r => [r.dataset.slice, Object.fromEntries(
             Array.from(r.querySelectorAll('td[data-col]')).map(c => [c.dataset.col, {
               value: c.getAttribute('data-value'), text: c.textContent.trim()}]))]))""")


def run_page(runs, name: str) -> pathlib.Path:
    return runs.reports_dir / name / "report.html"


def stamp_dirs(runs) -> List[str]:
    return sorted(p.name for p in runs.reports_dir.glob("2*"))


def assert_script_by_hash_only(policy: str) -> None:
    """script-src allows the pages' one script by its hash, and no other inline script."""
    from reports.pages import page_script

    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert "'unsafe-inline'" not in directives["script-src"]
    assert directives["script-src"] == f"'{page_script()[1]}'"
