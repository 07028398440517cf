"""Renders the three page types (one run, the index of runs, two runs compared) to HTML text.

Pages link to each other and to a run's other reports by relative paths, so a whole reports
directory can be copied or zipped and still work.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import os
import pathlib
import urllib.parse
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import jinja2
import markupsafe

from common import run_folders
from reports import TEMPLATES, anomaly_section, data_identity, data_section, model_section
from reports.facts import RunFacts
from reports.mlmd import RunRecord
from reports.summaries import RunSummary
from reports.model_section import split_slice

PAGE_SCRIPT = TEMPLATES / "sortable.js"
# What the status, size and serving cells are made of: a run read in full, or its summary.
Shown = Union[RunFacts, RunSummary]


def page_script() -> Tuple[str, str]:
    """(the pages' one script, its CSP source 'sha256-...').

    Pages stay single files that work from disk, so the script is inlined; the policy allows
    it by hash instead of 'unsafe-inline', so no other inline script can run.
    """
    text = PAGE_SCRIPT.read_text(encoding="utf-8")
    if "</script" in text.lower():
        raise ValueError(f"{PAGE_SCRIPT} must not contain '</script'")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()
    return text, f"sha256-{digest}"


def environment() -> jinja2.Environment:
    result = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                                undefined=jinja2.StrictUndefined, trim_blocks=True,
                                lstrip_blocks=True)
    text, digest = page_script()
    result.globals.update(page_script=markupsafe.Markup(text), page_script_hash=digest)
    return result


def href(target: pathlib.Path, page: pathlib.Path) -> str:
    """`target` as a link relative to the page at `page`."""
    relative = os.path.relpath(pathlib.Path(target).resolve(), pathlib.Path(page).resolve().parent)
    return urllib.parse.quote(pathlib.PurePath(relative).as_posix())


def when(moment: datetime.datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 90:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _now() -> str:
    return when(datetime.datetime.now(datetime.timezone.utc))


def status_short(facts: Shown) -> str:
    if facts.succeeded:
        return "succeeded"
    if "anomaly gate" in facts.status:
        return "stopped: anomalies"
    if facts.status.startswith("failed"):
        return "failed"
    return "incomplete"


def status_class(facts: Shown) -> str:
    if facts.succeeded:
        return "ok" if facts.blessed else "warn"
    return "bad"


def serving_text(facts: Shown) -> str:
    push = facts.push
    if push.get("pushed"):
        return f"pushed v{push.get('version')}"
    if push.get("version"):
        return f"v{push.get('version')} kept"
    return "not pushed"


def sizes_text(facts: Shown) -> str:
    return " / ".join(f"{facts.split_sizes[s]:,}" for s in ("train", "eval")
                      if s in facts.split_sizes) or "–"


def _hyperparameter_rows(facts: RunFacts) -> List[Dict[str, str]]:
    configured, tuned = facts.hyperparameters, facts.tuned_hyperparameters or {}
    effective = facts.effective_hyperparameters
    return [{"name": name, "configured": str(configured.get(name, "")),
             "tuned": str(tuned.get(name, "")), "effective": str(effective.get(name, ""))}
            for name in sorted(configured)]


def component_rows(record: RunRecord) -> List[Dict[str, Any]]:
    """Per component: state, start offset and duration, for the timing table and bars."""
    total = max(record.seconds, 1e-9)
    rows = []
    for component in record.components:
        offset = (component.started - record.started).total_seconds()
        rows.append({
            "node": component.node_id,
            "type": component.component_type.rsplit(".", 1)[-1],
            "state": component.state,
            "offset": offset,
            "seconds": component.seconds,
            "left": max(0.0, 100 * offset / total),
            "width": max(0.4, 100 * component.seconds / total),
        })
    return rows


def artifact_rows(record: RunRecord) -> List[Dict[str, str]]:
    """Every artifact a component produced (or reused from the cache), by component."""
    rows = []
    for component in record.components:
        for key, refs in sorted(component.outputs.items()):
            for ref in refs:
                rows.append({"node": component.node_id, "key": key, "type": ref.type_name,
                             "uri": ref.uri, "id": str(ref.id),
                             "reused": "yes" if component.state == "CACHED" else ""})
    return rows


def run_page(facts: RunFacts, page: pathlib.Path, index: pathlib.Path,
             metadata_path: pathlib.Path, with_warehouse: bool = True,
             tensorboard: Optional[Tuple[pathlib.Path, str]] = None) -> str:
    """The whole report of one run; `tensorboard` is (logdir, run name) of its training logs
    (reports.training_logs), else TensorBoard is pointed at the Trainer's own directory."""
    record = facts.record
    files = [(name, href(path, page)) for name, path in sorted(facts.report_files.items())]
    logdir, tensorboard_run = tensorboard if tensorboard else (facts.model_run_uri, None)
    return environment().get_template("run.html.j2").render(
        title=f"{record.pipeline_name}: run of {when(record.started)}",
        generated=_now(),
        links={"index": href(index, page), "files": files},
        run={"run_id": record.run_id, "pipeline_name": record.pipeline_name,
             "started": when(record.started), "finished": when(record.finished),
             "duration": duration(record.seconds), "status": facts.status,
             "status_short": status_short(facts), "succeeded": facts.succeeded},
        notes=facts.notes,
        data=data_section.context(facts, with_warehouse=with_warehouse),
        anomalies=anomaly_section.context(facts),
        model=model_section.context(facts),
        push={"pushed": bool(facts.push.get("pushed")), "version": facts.push.get("version"),
              "message": facts.push.get("message", ""), "reasons": facts.push.get("reasons", []),
              "destination": facts.push.get("destination")},
        hyperparameters=_hyperparameter_rows(facts),
        tuned=facts.tuned_hyperparameters is not None,
        components=component_rows(record),
        artifacts=artifact_rows(record),
        paths={"metadata": str(metadata_path),
               "reports": str(record.reports_dir) if record.reports_dir else None,
               "tensorboard": str(logdir) if logdir else None,
               "tensorboard_run": tensorboard_run,
               "model_run": facts.model_run_uri,
               "tensorboard_command": f".venv/bin/tensorboard --logdir {logdir}"},
        regenerate=(f".venv/bin/python -m reports run --metadata-path {metadata_path} "
                    f"--run-id {record.run_id} --out {index.parent}"),
    )


def _label(facts: RunFacts) -> str:
    return when(facts.record.started)


def monitoring_entries(index: pathlib.Path) -> List[Dict[str, Any]]:
    """The monitoring pages beside the index (python -m monitoring), newest first."""
    import json

    from monitoring import verdict

    found = []
    runs = run_folders.oldest_first(s.parent for s in
                                    (index.parent / "monitoring").glob("*/summary.json"))
    for summary in (run / "summary.json" for run in reversed(runs)):
        try:
            facts = json.loads(summary.read_text())
        except (OSError, ValueError):
            continue
        found.append({"href": href(summary.parent / "monitoring.html", index),
                      "label": summary.parent.name, "version": facts.get("version"),
                      "window": facts.get("window", ""), "rows": facts.get("rows", 0),
                      "verdict": verdict.index_cell(facts)})
    return found


def index_page(entries: Sequence[Dict[str, Any]], index: pathlib.Path,
               metadata_path: pathlib.Path, pipeline_root: Optional[pathlib.Path],
               pipeline_name: str) -> str:
    """The list of runs. Each entry: summary (reports.summaries.RunSummary), page (path),
    compare (path or None)."""
    runs = []
    for entry in entries:
        summary = entry["summary"]
        record = summary.record
        runs.append({
            "run_id": record.run_id,
            "label": record.name,
            "href": href(entry["page"], index),
            "started": when(record.started),
            "started_value": repr(record.started.timestamp()),
            "status_short": status_short(summary),
            "status_class": status_class(summary),
            "seconds": f"{record.seconds:.3f}",
            "duration": duration(record.seconds),
            "sizes": sizes_text(summary),
            "train_value": str(summary.split_sizes.get("train", "")),
            "rmse": model_section.number_cell(summary.rmse),
            "baseline_rmse": model_section.number_cell(summary.baseline_rmse),
            "blessed": summary.blessed,
            "serving": serving_text(summary),
            "compare_href": href(entry["compare"], index) if entry.get("compare") else None,
        })
    return environment().get_template("index.html.j2").render(
        title=f"{pipeline_name}: pipeline runs", generated=_now(), runs=runs,
        monitoring=monitoring_entries(index),
        metadata_path=str(metadata_path),
        pipeline_root=str(pipeline_root) if pipeline_root else None, out_dir=str(index.parent))


def compare_rows(a: Sequence[Any], b: Sequence[Any]) -> List[Dict[str, Any]]:
    """Slices of both runs matched by name; a slice only one run has shows dashes."""
    by_a = {m.slice_name: m for m in a}
    by_b = {m.slice_name: m for m in b}
    names = list(by_a) + [n for n in by_b if n not in by_a]
    rows = []
    for name in names:
        left, right = by_a.get(name), by_b.get(name)
        feature, value = split_slice(name)
        get = lambda m, attr: getattr(m, attr) if m is not None else None  # noqa: E731
        rows.append({
            "slice": name, "feature": feature, "value": value, "overall": not value,
            "count_a": model_section.count_cell(get(left, "example_count")),
            "count_b": model_section.count_cell(get(right, "example_count")),
            "rmse_a": model_section.number_cell(get(left, "rmse")),
            "rmse_b": model_section.number_cell(get(right, "rmse")),
            "delta_rmse": model_section.delta_cell(get(right, "rmse"), get(left, "rmse")),
            "mae_a": model_section.number_cell(get(left, "mae")),
            "mae_b": model_section.number_cell(get(right, "mae")),
            "delta_mae": model_section.delta_cell(get(right, "mae"), get(left, "mae")),
        })
    rows.sort(key=lambda r: (not r["overall"], model_section.feature_order(r["feature"]),
                             model_section.value_order(r["feature"], r["value"])))
    return rows


def compare_page(a: RunFacts, b: RunFacts, page: pathlib.Path, pages: Dict[str, pathlib.Path],
                 index: pathlib.Path, metadata_path: pathlib.Path) -> str:
    """Two runs side by side: their facts, hyperparameters and every slice's metrics."""
    import dataclasses

    def side(facts: RunFacts) -> Dict[str, Any]:
        return {"label": _label(facts), "href": href(pages[facts.record.run_id], page),
                "started": when(facts.record.started), "status": facts.status,
                "sizes": sizes_text(facts), "serving": serving_text(facts),
                "blessed": "yes" if facts.blessed else ("no" if facts.blessed is not None
                                                        else "–")}

    names = sorted(set(a.effective_hyperparameters) | set(b.effective_hyperparameters))
    hyperparameters = [{"name": n, "a": str(a.effective_hyperparameters.get(n, "–")),
                        "b": str(b.effective_hyperparameters.get(n, "–"))} for n in names]
    rows, charts = [], []
    if a.metrics and b.metrics:
        rows = compare_rows(a.metrics, b.metrics)
        # The chart helper draws a candidate beside a baseline: B beside A.
        by_a = {m.slice_name: m for m in a.metrics}
        merged = [dataclasses.replace(m, baseline_rmse=by_a[m.slice_name].rmse
                                      if m.slice_name in by_a else None)
                  for m in b.metrics]
        charts = model_section.slice_charts(merged, None, prefix="compare",
                                            names=("B", "A"))
    return environment().get_template("compare.html.j2").render(
        title=f"{b.record.pipeline_name}: run A ({_label(a)}) vs run B ({_label(b)})",
        generated=_now(), links={"index": href(index, page)}, a=side(a), b=side(b),
        hyperparameters=hyperparameters, rows=rows, charts=charts,
        data_warning=data_identity.rows_warning(a.statistics, b.statistics),
        regenerate=(f".venv/bin/python -m reports compare {a.record.run_id} {b.record.run_id} "
                    f"--metadata-path {metadata_path} --out {index.parent}"))
