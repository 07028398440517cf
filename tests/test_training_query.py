"""A model version's own training query maps and filters the table's values in batch and local
prediction, and its own split buckets cut batch prediction's --split, whatever this checkout's
query file and split flags say by then (serving/training_query.py)."""
from __future__ import annotations

import csv
import io
import json
import pathlib
import shutil
from typing import Any, Dict, List

import numpy as np
import pytest

from common.config import DataConfig
from modules import contract, features
from serving import batch_predict, local_predict, model_store, training_query
from tests.serving_fixtures import RunningServer, server_predictions
from tests.tolerances import prediction_abs
from warehouse import sql

pytest_plugins = ("tests.serving_fixtures",)

LABEL, PREDICTED = features.LABEL_KEY, batch_predict.PREDICTION_COLUMN
# The edits a later checkout might make to the query file: twins spelled as the next category,
# and a filter that keeps older mothers only.
SPELLING = ("WHEN 2 THEN 'Twins(2)'", "WHEN 2 THEN 'Triplets(3)'")
FILTER = ("AND mother_age > 0", "AND mother_age > 30")
OTHER_QUERY_SAYS = "was trained with another training query"
# Split flags a version might have been trained with: --train-buckets 5 --eval-buckets 2.
OTHER_SPLITS = DataConfig(train_buckets=5, eval_buckets=2)
TOLERANCE = {"rtol": 0, "atol": prediction_abs()}  # see tests.tolerances.prediction_abs


def _edited(query: str) -> str:
    for old, new in (SPELLING, FILTER):
        assert query.count(old) == 1, old
        query = query.replace(old, new)
    return query


@pytest.fixture(scope="module")
def edited_model_dir(shared_server: RunningServer,
                     tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The shared server's newest version, the same weights, under a model directory of its
    own, recording the edited query as the one it was trained with."""
    version, path = model_store.resolve_version(str(shared_server.model_dir))
    root = tmp_path_factory.mktemp("edited_query") / "babyweight"
    copy = root / str(version)
    shutil.copytree(path, copy)
    recorded = copy / contract.TRAINING_QUERY_FILE
    assert recorded.read_text() == sql.base_query(), "the export records the query it ran"
    recorded.write_text(_edited(sql.base_query()))
    splits = copy / contract.TRAINING_SPLITS_FILE
    assert json.loads(splits.read_text()) == DataConfig().split_layout(), (
        "the export records the split buckets it was trained with")
    splits.write_text(json.dumps(OTHER_SPLITS.split_layout()))
    return root


def _as_model(row: Dict[str, Any], plurality: str) -> Dict[str, Any]:
    male = row["is_male"] in (True, "true")
    return {"is_male": features.IS_MALE_TRUE if male else features.IS_MALE_FALSE,
            "plurality": plurality, "mother_age": float(row["mother_age"]),
            "gestation_weeks": float(row["gestation_weeks"])}


def test_a_version_s_recorded_query_is_read_and_the_checkout_s_stands_in_for_none(
        edited_model_dir: pathlib.Path, tmp_path: pathlib.Path,
        caplog: pytest.LogCaptureFixture) -> None:
    version, path = model_store.resolve_version(str(edited_model_dir))
    with caplog.at_level("WARNING", logger=training_query.LOGGER.name):
        assert training_query.query_of_version(version, path) == _edited(sql.base_query())
        assert OTHER_QUERY_SAYS in caplog.text
        caplog.clear()
        old = tmp_path / "1"
        old.mkdir()
        assert training_query.query_of_version(1, str(old)) == sql.base_query()
        assert "Version 1 records no training query" in caplog.text


def _export(warehouse: pathlib.Path, path: pathlib.Path) -> List[Dict[str, str]]:
    """Twins and singles, mothers on both sides of 30 (50 rows of each), as a CSV export of
    the table."""
    from warehouse import engine

    age, weeks = features.MOTHER_AGE, features.GESTATION_WEEKS
    query = (f"SELECT * FROM natality WHERE year > 2000 AND weight_pounds > 0 AND plurality "
             f"IN (1, 2) AND mother_age BETWEEN {age.min_value} AND {age.max_value} AND "
             f"gestation_weeks BETWEEN {weeks.min_value} AND {weeks.max_value} "
             "QUALIFY row_number() OVER (PARTITION BY plurality, mother_age > 30 "
             "ORDER BY year, month, mother_age, gestation_weeks) <= 50")
    connection = engine.connect(warehouse)
    try:
        connection.execute(f"COPY ({query}) TO '{path}' (HEADER)")
    finally:
        connection.close()
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_batch_predict_maps_and_filters_the_table_by_the_version_s_query(
        small_warehouse: pathlib.Path, edited_model_dir: pathlib.Path,
        shared_server: RunningServer, tmp_path: pathlib.Path, capsys: Any) -> None:
    rows = _export(small_warehouse, tmp_path / "natality.csv")
    twins = [n for n, r in enumerate(rows) if r["plurality"] == "2"]
    young = [n for n, r in enumerate(rows) if int(r["mother_age"]) <= 30]
    assert len(rows) == 200 and len(twins) == 100 and len(young) == 100
    # --input: the table's values spelled by the version's query (the filters are the query's
    # business only when it reads the rows).
    out = tmp_path / "predictions.jsonl"
    code = batch_predict.main(["--model-dir", str(edited_model_dir), "--input",
                               str(tmp_path / "natality.csv"), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 0 and OTHER_QUERY_SAYS in err, err
    got = [json.loads(line) for line in out.read_text().splitlines()]
    names = features.PLURALITY_NAMES
    expected = [_as_model(r, names[2] if r["plurality"] == "2" else names[0]) for r in rows]
    assert [{k: g[k] for k in features.FEATURE_NAMES} for g in got] == expected
    np.testing.assert_allclose(np.float32([g[PREDICTED] for g in got]),
                               np.float32(server_predictions(shared_server, expected)),
                               **TOLERANCE)
    # --source: the version's filter rejects the young mothers, naming it.
    code = batch_predict.main(["--model-dir", str(edited_model_dir), "--source",
                               str(tmp_path / "natality.csv"), "--output", str(out),
                               "--max-error-rate", "1"])
    assert code == 0, capsys.readouterr().err
    errors = [json.loads(line) for line in
              pathlib.Path(str(out) + batch_predict.ERRORS_SUFFIX).read_text().splitlines()]
    assert [e["key"] for e in errors] == young
    assert {e["error"] for e in errors} == {"fails the training query's filter mother_age > 30"}
    kept = [n for n in range(len(rows)) if n not in young]
    assert [json.loads(line)["key"] for line in out.read_text().splitlines()] == kept


def test_local_predict_spells_a_table_row_by_the_version_s_query(
        edited_model_dir: pathlib.Path, shared_server: RunningServer,
        tmp_path: pathlib.Path, capsys: Any) -> None:
    row = {"is_male": "false", "mother_age": 31, "plurality": 2, "gestation_weeks": 37}
    lines = tmp_path / "rows.jsonl"
    lines.write_text(json.dumps(row) + "\n")
    out = io.StringIO()
    code = local_predict.main(["--model-dir", str(edited_model_dir), "--json-instances",
                               str(lines)], out=out)
    assert code == 0 and OTHER_QUERY_SAYS in capsys.readouterr().err
    (printed,) = [json.loads(line) for line in out.getvalue().splitlines()]
    expected = _as_model(row, features.PLURALITY_NAMES[2])
    (answer,) = server_predictions(shared_server, [expected])
    np.testing.assert_allclose(np.float32(printed[LABEL]), np.float32(answer), **TOLERANCE)
    (twins,) = server_predictions(shared_server, [_as_model(row, features.PLURALITY_NAMES[1])])
    assert abs(twins - printed[LABEL]) > TOLERANCE["atol"], (
        "the two spellings must be told apart by the model for this test to mean anything")


def _split_labels(warehouse: pathlib.Path, query: str, split: str,
                  data: DataConfig) -> List[float]:
    """The labels of `split`'s rows under `query` and `data`'s buckets, in table order: the
    whole scoring query's passing rows, kept by their month's bucket computed here
    (ABS(MOD(h, n)) is |h| mod n)."""
    from warehouse import engine

    lo, hi = data.split_buckets()[split]
    connection = engine.connect(warehouse)
    try:
        rows = connection.execute(sql.to_duckdb(sql.scoring_query(query))).df()
    finally:
        connection.close()
    passing = rows[rows[sql.REJECTED_COLUMN].isna()]
    buckets = [abs(int(h)) % data.hash_buckets for h in passing["hashmonth"]]
    return [float(w) for w, b in zip(passing[LABEL], buckets) if lo <= b < hi]


def test_batch_predict_s_split_is_cut_by_the_version_s_own_buckets(
        small_warehouse: pathlib.Path, edited_model_dir: pathlib.Path,
        tmp_path: pathlib.Path, capsys: Any) -> None:
    query = _edited(sql.base_query())  # the version's: mothers over 30 only
    theirs, ours = (_split_labels(small_warehouse, query, "eval", data)
                    for data in (OTHER_SPLITS, DataConfig()))
    limit = 60
    assert len(theirs) > limit and theirs[:limit] != ours[:limit], (
        "the two layouts must hold different rows for this test to tell them apart")
    out = tmp_path / "eval.jsonl"
    code = batch_predict.main(["--model-dir", str(edited_model_dir), "--warehouse",
                               str(small_warehouse), "--split", "eval", "--limit", str(limit),
                               "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    lo, hi = OTHER_SPLITS.split_buckets()["eval"]
    assert (f"Split eval: rows with ABS(MOD(hashmonth, {OTHER_SPLITS.hash_buckets})) in "
            f"[{lo}, {hi})") in err
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g[LABEL] for g in got] == theirs[:limit]


def test_a_version_without_recorded_splits_is_cut_by_the_default_buckets_with_a_warning(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    old = tmp_path / "1"
    (old / "assets.extra").mkdir(parents=True)
    with caplog.at_level("WARNING", logger=training_query.LOGGER.name):
        training = training_query.of_version(1, str(old), with_splits=True)
    assert dict(training.split_buckets) == DataConfig().split_buckets()
    assert "Version 1 records no split buckets" in caplog.text
    (old / contract.TRAINING_SPLITS_FILE).write_text('{"hash_buckets": 10}')
    with pytest.raises(ValueError, match="is not a split layout"):
        training_query.of_version(1, str(old), with_splits=True)
