"""The analysis notebooks run headless, end to end, on a real run's artifacts (nbclient)."""
from __future__ import annotations

import os
import pathlib
from typing import Any, List

import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
slow = pytest.mark.slow


def executed(name: str, metadata_path: pathlib.Path, monkeypatch: Any) -> Any:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from reports import notebook_runs

    monkeypatch.setenv(notebook_runs.METADATA_VARIABLE, str(metadata_path))
    monkeypatch.delenv(notebook_runs.RUN_VARIABLE, raising=False)
    notebook = nbformat.read(str(NOTEBOOKS / name), as_version=4)
    # The kernel inherits this environment: the store above, and PYTHONPATH's tree.
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return notebook


def texts(notebook: Any) -> List[str]:
    out = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{output.ename}: {output.evalue}"
            out.append(str(output.get("text") or output.get("data", {}).get("text/plain", "")))
    return out


@slow
def test_data_validation_notebook(pipeline_runs, monkeypatch):
    from tests.report_checks import run_ids_newest_first

    notebook = executed("data_validation.ipynb", pipeline_runs.metadata_path, monkeypatch)
    shown = "\n".join(texts(notebook))
    # The newest run with statistics is the anomaly run: TFDV shows its plurality anomaly.
    opened = next(t for t in texts(notebook) if t.startswith("run "))
    assert opened.split()[1] == run_ids_newest_first(pipeline_runs.metadata_path)[0]
    assert "train anomalies: ['plurality']" in shown
    assert any("weight_pounds" in text for text in texts(notebook))
    html = [o for c in notebook.cells for o in c.get("outputs", [])
            if "text/html" in o.get("data", {})]
    assert any("facets" in o["data"]["text/html"].lower() for o in html), "no Facets view"


@slow
def test_model_analysis_notebook(pipeline_runs, monkeypatch):
    from reports.evaluation_results import read_metrics
    from tests.report_checks import evaluation_uris

    notebook = executed("model_analysis.ipynb", pipeline_runs.metadata_path, monkeypatch)
    shown = "\n".join(texts(notebook))
    assert "validation ok: True" in shown
    newest = evaluation_uris(pipeline_runs.metadata_path)[-1]
    assert newest in shown  # the newest evaluated run, found through ML Metadata
    for metric in read_metrics(newest):
        assert metric.slice_name.split(" ")[0] in shown


def test_notebooks_default_to_the_runs_store(monkeypatch, tmp_path):
    from reports import notebook_runs

    monkeypatch.delenv(notebook_runs.METADATA_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    assert notebook_runs.metadata_path() == notebook_runs.PROJECT_ROOT / "runs" / "metadata.sqlite"
    monkeypatch.setenv(notebook_runs.METADATA_VARIABLE, str(tmp_path / "m.sqlite"))
    assert notebook_runs.metadata_path() == tmp_path / "m.sqlite"
    with pytest.raises(FileNotFoundError, match="run the pipeline first"):
        notebook_runs.latest_run("Evaluator", "evaluation")
