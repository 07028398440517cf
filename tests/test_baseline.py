"""The Evaluator's baseline is a blessed model whose files exist, or none: a pipeline root
deleted or moved while the metadata store was kept no longer crashes the next run."""
import json
import pathlib
import random
import sqlite3

import pytest
from tfx.types import standard_artifacts

from pipelines.baseline import BASELINE_NOTE, PresentBlessedModelStrategy, model_files_present
from tests.pipeline_helpers import FAST_TRAINING, run_local_pipeline
from tests.pipeline_run_fixtures import copy_of


def _model(tmp_path: pathlib.Path, model_id: int, on_disk: bool):
    model = standard_artifacts.Model()
    model.id, model.uri = model_id, str(tmp_path / "Trainer" / "model" / str(model_id))
    if on_disk:
        serving = pathlib.Path(model.uri) / "Format-Serving"
        serving.mkdir(parents=True)
        (serving / "saved_model.pb").write_bytes(b"")
    return model


def _blessing(model_id: int, blessed: bool = True):
    blessing = standard_artifacts.ModelBlessing()
    blessing.id = 100 + model_id
    blessing.set_int_custom_property("current_model_id", model_id)
    blessing.set_int_custom_property("blessed", int(blessed))
    return blessing


def _resolve(tmp_path, models, blessings):
    strategy = PresentBlessedModelStrategy(note_path=str(tmp_path / "reports" / BASELINE_NOTE))
    result = strategy.resolve_artifacts(None, {"model": models, "model_blessing": blessings})
    return [m.id for m in result["model"]], [b.id for b in result["model_blessing"]]


def test_the_newest_blessed_model_on_disk_is_the_baseline(tmp_path):
    models = [_model(tmp_path, 1, True), _model(tmp_path, 2, True), _model(tmp_path, 3, True)]
    assert _resolve(tmp_path, models, [_blessing(1), _blessing(2), _blessing(3, False)]) == (
        [2], [102])
    assert not (tmp_path / "reports" / BASELINE_NOTE).exists()


@pytest.mark.parametrize("seed", range(5))
def test_with_every_model_on_disk_it_chooses_what_tfx_s_own_strategy_chooses(tmp_path, seed):
    from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
        LatestBlessedModelStrategy)
    rng = random.Random(seed)
    ids = rng.sample(range(1, 40), 8)
    models = [_model(tmp_path, i, True) for i in ids]
    blessings = [_blessing(i, rng.random() < 0.5) for i in rng.sample(ids, 6)]
    stock = LatestBlessedModelStrategy().resolve_artifacts(
        None, {"model": list(models), "model_blessing": list(blessings)})
    expected = ([m.id for m in stock["model"]], [b.id for b in stock["model_blessing"]])
    assert _resolve(tmp_path, models, blessings) == expected


def test_no_model_or_no_blessing_yet_resolves_to_nothing(tmp_path):
    assert _resolve(tmp_path, [], [_blessing(1)]) == ([], [])
    assert _resolve(tmp_path, [_model(tmp_path, 1, True)], []) == ([], [])


def test_a_blessed_model_whose_files_are_gone_is_passed_over_and_named(tmp_path, caplog):
    models = [_model(tmp_path, 1, True), _model(tmp_path, 2, False)]
    assert not model_files_present(models[1].uri)
    assert _resolve(tmp_path, models, [_blessing(1), _blessing(2)]) == ([1], [101])
    note = json.loads((tmp_path / "reports" / BASELINE_NOTE).read_text())
    assert note["missing"] == [models[1].uri] and note["baseline"] == models[0].uri
    assert models[1].uri in caplog.text and "cannot be the baseline" in caplog.text


def test_with_no_blessed_model_on_disk_there_is_no_baseline(tmp_path):
    models = [_model(tmp_path, 1, False), _model(tmp_path, 2, False)]
    assert _resolve(tmp_path, models, [_blessing(1), _blessing(2)]) == ([], [])
    note = json.loads((tmp_path / "reports" / BASELINE_NOTE).read_text())
    assert note["missing"] == [models[1].uri, models[0].uri] and note["baseline"] is None
    assert "absolute bounds alone" in note["message"]


def _move_models(metadata_path: pathlib.Path, old_root: pathlib.Path, new_root: pathlib.Path
                 ) -> int:
    """Every Model artifact's URI as if the pipeline root had been moved: the files are gone."""
    with sqlite3.connect(metadata_path) as con:
        return con.execute(
            "UPDATE Artifact SET uri = replace(uri, ?, ?) WHERE type_id = "
            "(SELECT id FROM Type WHERE name = 'Model')", (str(old_root), str(new_root))).rowcount


@pytest.mark.slow
def test_a_run_whose_baseline_files_are_gone_is_judged_without_one(pipeline_runs, tmp_path,
                                                                   capsys):
    with copy_of(pipeline_runs, tmp_path / "copy") as copy:
        moved = tmp_path / "moved_root"
        assert _move_models(copy.metadata_path, pipeline_runs.pipeline_root, moved) > 0
        training = list(FAST_TRAINING)
        training[training.index("--epochs") + 1] = "3"  # a new model, not the cached one
        code = run_local_pipeline(copy.base, "--database", str(copy.warehouse),
                                  "--rmse-upper-bound", "1.25", *training)
        err = capsys.readouterr().err
        assert code == 0, err[-3000:]
        assert "Traceback" not in err and str(moved) in err and "cannot be the baseline" in err
        (reports_dir,) = [p for p in (copy.reports_dir).glob("2*")
                          if (p / BASELINE_NOTE).exists()]
        decision = json.loads((reports_dir / "push.json").read_text())
        assert decision["pushed"] and decision["baseline_rmse"] is None
        assert decision["baseline_missing"] and all(
            uri.startswith(str(moved)) for uri in decision["baseline_missing"])
        assert "absolute bounds alone" in decision["message"]
