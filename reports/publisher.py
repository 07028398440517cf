"""Where pages go, and `publish`: the run's report plus the index, called after every run.

Layout of a reports directory (the runner's `--reports-dir`):

    index.html                      every run, newest first
    <run's reports dir>/report.html beside that run's eda.html, anomalies.txt, push.json
    .../report_summary.json         beside each report.html: what the index shows of the run
    runs/<run id>/report.html       runs whose own reports dir lies elsewhere
    compare/<run A>--<run B>.html   two runs side by side
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any, Dict, List, Optional

from common.files import write_atomically
from reports import data_identity, mlmd, model_card, pages, summaries, training_logs
from reports.facts import RunFacts, collect
from reports.summaries import RunSummary

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
INDEX_FILE = "index.html"
# Names the run a reports directory belongs to, for runs that failed before recording it.
RUN_ID_FILE = ".mlmd_run_id"


def run_page_path(record: mlmd.RunRecord, out_dir: pathlib.Path) -> pathlib.Path:
    """Beside the run's other reports when they live in `out_dir`, else under runs/."""
    out_dir = pathlib.Path(out_dir)
    own = record.reports_dir
    if own is not None and own.resolve().parent == out_dir.resolve():
        return out_dir / own.name / REPORT_FILE
    return out_dir / "runs" / record.slug / REPORT_FILE


def compare_page_path(a: mlmd.RunRecord, b: mlmd.RunRecord, out_dir: pathlib.Path
                      ) -> pathlib.Path:
    return pathlib.Path(out_dir) / "compare" / f"{a.slug}--{b.slug}.html"


@dataclasses.dataclass(frozen=True)
class Published:
    """The pages a call wrote (or found already written)."""

    run_page: Optional[pathlib.Path]
    index: Optional[pathlib.Path]
    compare_page: Optional[pathlib.Path] = None
    # Set when the run read other data than the run that trained its baseline model.
    data_note: Optional[str] = None


class Reports:
    """One metadata store's runs, read once, with the pages written from them."""

    def __init__(self, metadata_path: pathlib.Path, out_dir: pathlib.Path,
                 pipeline_root: Optional[pathlib.Path] = None,
                 pipeline_name: Optional[str] = None, with_warehouse: bool = True) -> None:
        self.metadata_path = pathlib.Path(metadata_path)
        self.out_dir = pathlib.Path(out_dir)
        self.pipeline_root = pipeline_root
        self.with_warehouse = with_warehouse
        store = mlmd.open_store(self.metadata_path)
        self.runs: List[mlmd.RunRecord] = self._with_known_dirs(
            mlmd.list_runs(store, pipeline_name, pipeline_root))
        self.pipeline_name = (pipeline_name or (self.runs[0].pipeline_name if self.runs
                                                else "pipeline"))
        self._facts: Dict[str, RunFacts] = {}
        self._summaries: Dict[str, RunSummary] = {}

    def _with_known_dirs(self, runs: List[mlmd.RunRecord]) -> List[mlmd.RunRecord]:
        """Runs that recorded no reports dir get the one `adopt` marked for them."""
        marked = {}
        for marker in self.out_dir.glob(f"*/{RUN_ID_FILE}"):
            marked[marker.read_text().strip()] = marker.parent
        return [dataclasses.replace(r, known_reports_dir=marked[r.run_id])
                if r.reports_dir is None and r.run_id in marked else r for r in runs]

    def adopt(self, record: mlmd.RunRecord, reports_dir: pathlib.Path) -> mlmd.RunRecord:
        """Records that `reports_dir` belongs to `record`, for this and every later index."""
        reports_dir = pathlib.Path(reports_dir)
        reports_dir.mkdir(parents=True, exist_ok=True)
        (reports_dir / RUN_ID_FILE).write_text(record.run_id + "\n")
        adopted = dataclasses.replace(record, known_reports_dir=reports_dir)
        self.runs = [adopted if r.run_id == record.run_id else r for r in self.runs]
        return adopted

    @property
    def index_path(self) -> pathlib.Path:
        return self.out_dir / INDEX_FILE

    def facts(self, record: mlmd.RunRecord) -> RunFacts:
        if record.run_id not in self._facts:
            facts = collect(record)
            note = data_identity.baseline_note(self.runs, record, facts.baseline_model_uri)
            if note:
                facts.notes.append(note)
            self._facts[record.run_id] = facts
        return self._facts[record.run_id]

    def summary(self, record: mlmd.RunRecord) -> RunSummary:
        """What the index shows of `record`: its summary file when that holds, else the run's
        artifacts read the full way (TensorFlow and TFMA imported then), and the file written."""
        if record.run_id not in self._summaries:
            page = run_page_path(record, self.out_dir)
            found = None if record.run_id in self._facts else summaries.read(page, record)
            if found is None:
                if record.run_id not in self._facts:
                    logger.info("Run %s has no summary that holds; reading its artifacts",
                                record.name)
                    summaries.write(page, self.facts(record))
                found = summaries.of(self.facts(record))
            self._summaries[record.run_id] = found
        return self._summaries[record.run_id]

    def data_note(self, record: mlmd.RunRecord) -> Optional[str]:
        return data_identity.baseline_note(self.runs, record,
                                           self.facts(record).baseline_model_uri)

    def find(self, run_id: Optional[str]) -> mlmd.RunRecord:
        return mlmd.find_run(self.runs, run_id)

    def previous(self, record: mlmd.RunRecord) -> Optional[mlmd.RunRecord]:
        """The run before `record` (runs are newest first)."""
        position = [r.run_id for r in self.runs].index(record.run_id)
        return self.runs[position + 1] if position + 1 < len(self.runs) else None

    def write_run(self, record: mlmd.RunRecord) -> pathlib.Path:
        path = run_page_path(record, self.out_dir)
        facts = self.facts(record)
        card = model_card.publish(facts, path.parent)
        if card is not None:  # linked from the page's list of the run's other reports
            facts.report_files[card.name] = card
        logdir = training_logs.logdir_for(self.out_dir)
        tensorboard_run = training_logs.link_training_logs(logdir, record.name,
                                                           facts.model_run_uri)
        html = pages.run_page(facts, path, self.index_path, self.metadata_path,
                              with_warehouse=self.with_warehouse,
                              tensorboard=(logdir, tensorboard_run) if tensorboard_run else None)
        write_atomically(path, html)
        summaries.write(path, facts)
        self._summaries.pop(record.run_id, None)
        logger.info("Run report written to %s", path)
        return path

    def write_compare(self, a: mlmd.RunRecord, b: mlmd.RunRecord) -> pathlib.Path:
        path = compare_page_path(a, b, self.out_dir)
        run_pages = {r.run_id: run_page_path(r, self.out_dir) for r in (a, b)}
        html = pages.compare_page(self.facts(a), self.facts(b), path, run_pages,
                                  self.index_path, self.metadata_path)
        write_atomically(path, html)
        logger.info("Comparison written to %s", path)
        return path

    def index_entries(self, rebuild: bool = False) -> List[Dict[str, Any]]:
        """Each run's summary, page and 'vs previous' comparison (pages.index_page); the pages
        these link to are written first when missing (all of them with `rebuild`), so every
        link resolves."""
        entries = []
        for record in self.runs:
            page = run_page_path(record, self.out_dir)
            if rebuild or not page.exists():
                self.write_run(record)
            previous = self.previous(record)
            compare = None
            if previous is not None and self.summary(record).has_metrics and \
                    self.summary(previous).has_metrics:
                compare = compare_page_path(previous, record, self.out_dir)
                if rebuild or not compare.exists():
                    self.write_compare(previous, record)
            entries.append({"summary": self.summary(record), "page": page, "compare": compare})
        return entries

    def index_html(self, entries: List[Dict[str, Any]]) -> str:
        return pages.index_page(entries, self.index_path, self.metadata_path,
                                self.pipeline_root, self.pipeline_name)

    def write_index(self, rebuild: bool = False) -> pathlib.Path:
        """The index of every run (see index_entries)."""
        write_atomically(self.index_path, self.index_html(self.index_entries(rebuild)))
        logger.info("Index of %d runs written to %s", len(self.runs), self.index_path)
        return self.index_path


def publish(metadata_path: pathlib.Path, pipeline_root: Optional[pathlib.Path] = None,
            run_id: Optional[str] = None, out_dir: Optional[pathlib.Path] = None,
            pipeline_name: Optional[str] = None, with_warehouse: bool = True,
            run_reports_dir: Optional[pathlib.Path] = None) -> Published:
    """Writes the report of `run_id` (default: the newest run) and refreshes the index.

    Called by the local runner after every run, successful or not; `out_dir` defaults to the
    runner's reports directory. `run_reports_dir` is the run's own directory there: a run that
    failed before any report-writing component started has not recorded it in ML Metadata.
    """
    if out_dir is None:
        from common.config import PipelineConfig

        out_dir = PipelineConfig().reports_dir
    reports = Reports(metadata_path, out_dir, pipeline_root, pipeline_name, with_warehouse)
    record = reports.find(run_id)
    if record.reports_dir is None and run_reports_dir is not None:
        record = reports.adopt(record, run_reports_dir)
    run_page = reports.write_run(record)
    previous = reports.previous(record)
    compare = None
    if previous is not None and reports.summary(record).has_metrics and \
            reports.summary(previous).has_metrics:
        compare = reports.write_compare(previous, record)
    return Published(run_page=run_page, index=reports.write_index(), compare_page=compare,
                     data_note=reports.data_note(record))
