"""`python -m serving.local_predict` on a model directory whose newest version does not load:
the command says which version, where, and why, in one line (exit 1), not a traceback."""
from __future__ import annotations

import io
import json
import pathlib
import shutil
from typing import Any

from modules import features
from serving import local_predict
from tests.serving_fixtures import ServingModels

pytest_plugins = ("tests.serving_fixtures",)


def test_a_newest_version_that_does_not_load_is_named_in_one_line(
        serving_models: ServingModels, tmp_path: pathlib.Path, capsys: Any) -> None:
    model_dir = serving_models.serving_dir(tmp_path)
    (model_dir / "2").mkdir()  # a numbered directory without a SavedModel
    lines = tmp_path / "instances.jsonl"
    lines.write_text(json.dumps(serving_models.instances[0]) + "\n")
    argv = ["--model-dir", str(model_dir), "--json-instances", str(lines)]
    out = io.StringIO()
    assert local_predict.main(argv, out=out) == 1
    err = capsys.readouterr().err
    assert out.getvalue() == "" and "Traceback" not in err
    said = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(said) == 1 and said[0].startswith(
        f"error: cannot load version 2 from {model_dir / '2'}: NotFoundError: "), err
    assert "saved_model" in said[0]

    assert local_predict.main([*argv, "--version", "1"], out=out) == 0  # the older one does
    assert list(json.loads(out.getvalue())) == [features.LABEL_KEY]


def test_batch_predict_names_a_version_that_does_not_load_before_its_pipeline_starts(
        serving_models: ServingModels, tmp_path: pathlib.Path, capsys: Any) -> None:
    from serving import batch_predict

    model_dir = serving_models.serving_dir(tmp_path)
    newest = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    broken = model_dir / str(newest + 1)
    shutil.copytree(model_dir / str(newest), broken)  # its assets and query are readable
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    rows = tmp_path / "births.jsonl"
    rows.write_text(json.dumps(serving_models.instances[0]) + "\n")
    output = tmp_path / "predictions.jsonl"
    argv = ["--model-dir", str(model_dir), "--input", str(rows), "--output", str(output)]
    assert batch_predict.main(argv) == 1
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(said) == 1, err
    assert said[0].startswith(f"error: cannot load version {newest + 1} from {broken}: "), err
    assert not list(tmp_path.glob("predictions.jsonl*")), "nothing written for a failed run"
