"""Local predict and Beam batch prediction give the REST server's answers on the same rows,
read rows in the table's own format, and lose none without counting and naming it."""
from __future__ import annotations

import csv
import io
import json
import pathlib
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import duckdb
import numpy as np
import pytest

from modules import features
from serving import batch_input, batch_predict, local_predict
from tests.tolerances import prediction_abs
from tests.serving_fixtures import RunningServer, ServingModels, server_predictions

# Registered as a plugin (not imported by name) so session fixtures run once per session.
pytest_plugins = ("tests.serving_fixtures",)

LABEL, PREDICTED = features.LABEL_KEY, batch_predict.PREDICTION_COLUMN
COURSE = {"is_male": True, "mother_age": 26, "plurality": "Single(1)", "gestation_weeks": 39}


def _float32(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# A row's answer may differ with the batch it ran in: see tests.tolerances.prediction_abs.
TOLERANCE = {"rtol": 0, "atol": prediction_abs()}


def _table_instance(row: Dict[str, Any]) -> Dict[str, Any]:
    """A natality row in the model's spelling, from the declaration (plurality n is the n-th)."""
    male = row["is_male"] in (True, "true")  # a BOOL, or its CSV text
    return {"is_male": features.IS_MALE_TRUE if male else features.IS_MALE_FALSE,
            "plurality": features.PLURALITY_NAMES[int(row["plurality"]) - 1],
            "mother_age": float(row["mother_age"]),
            "gestation_weeks": float(row["gestation_weeks"])}


@pytest.fixture(scope="module")
def model_dir(shared_server: RunningServer) -> str:
    """The shared server's own model directory, so all three use the same version."""
    return str(shared_server.model_dir)


@pytest.fixture(scope="module", autouse=True)
def _each_version_loaded_once() -> Iterator[None]:
    """Every local_predict and batch_predict run loads, checks and warms up its model version
    (a command's process does it once; Beam's RunInference once per pipeline), and that is
    most of a small run's cost. Here every run predicts with the shared server's versions,
    so a version's first load is the real one and later runs get that loaded model again:
    each run still predicts with the real model, through the real RunInference pipeline."""
    from serving import model_store

    loaded: Dict[Tuple[int, str], Any] = {}
    load = model_store.load_version

    def load_once(version: int, path: str) -> Any:
        if (version, path) not in loaded:
            loaded[(version, path)] = load(version, path)
        return loaded[(version, path)]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_store, "load_version", load_once)
        yield


def _in_range_rows(limit: int, where: str = "TRUE") -> str:
    """The first `limit` rows of the table (matching `where`) that every declared range accepts."""
    age, weeks = features.MOTHER_AGE, features.GESTATION_WEEKS
    return (f"SELECT * FROM natality WHERE {where} AND mother_age BETWEEN {age.min_value} AND "
            f"{age.max_value} AND gestation_weeks BETWEEN {weeks.min_value} AND "
            f"{weeks.max_value} AND plurality BETWEEN 1 AND {len(features.PLURALITY_NAMES)} "
            f"LIMIT {limit}")


def _export(warehouse: pathlib.Path, query: str, path: pathlib.Path, options: str) -> None:
    """Writes the rows of `query` on the warehouse to `path`, as a user's export of the table."""
    from warehouse import engine

    connection = engine.connect(warehouse)
    try:
        connection.execute(f"COPY ({query}) TO '{path}' ({options})")
    finally:
        connection.close()


def _read_output(path: pathlib.Path) -> List[Dict[str, Any]]:
    if path.suffix == ".csv":
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    return [json.loads(line) for line in path.read_text().splitlines()]


def _errors(output: pathlib.Path) -> List[Dict[str, Any]]:
    path = pathlib.Path(str(output) + batch_predict.ERRORS_SUFFIX)
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(argv: List[str], capsys: Any) -> Tuple[int, str, str]:
    code = batch_predict.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------------
# local_predict
# ------------------------------------------------------------------------------------------------

def test_local_predict_matches_server(serving_models: ServingModels,
                                      shared_server: RunningServer, model_dir: str,
                                      tmp_path: pathlib.Path, capsys: Any) -> None:
    instances = serving_models.instances[:20]
    path = tmp_path / "instances.jsonl"
    path.write_text("\n".join(json.dumps(i) for i in [*instances, COURSE]) + "\n\n")
    out = io.StringIO()
    assert local_predict.main(["--model-dir", model_dir, "--json-instances", str(path),
                               "--batch-size", "7"], out=out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(list(line) == [LABEL] for line in lines)
    expected = server_predictions(shared_server, [*instances, COURSE])
    np.testing.assert_allclose(_float32([line[LABEL] for line in lines]),
                               _float32(expected), **TOLERANCE)
    assert "read 21, predicted 21, rejected 0" in capsys.readouterr().err


def test_local_predict_rejects_bad_lines_in_place_and_reads_table_rows(
        shared_server: RunningServer, model_dir: str, tmp_path: pathlib.Path,
        capsys: Any) -> None:
    table_row = {"is_male": "false", "mother_age": 31, "plurality": 2, "gestation_weeks": 37,
                 "year": 2005, LABEL: 5.5}
    no_plurality = {k: v for k, v in COURSE.items() if k != "plurality"}
    lines = [json.dumps(COURSE), "", json.dumps({**COURSE, "mother_age": 99}),
             json.dumps(no_plurality), "{not json", json.dumps(table_row)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    argv = ["--model-dir", model_dir, "--json-instances", str(bad), "--batch-size", "2"]
    out = io.StringIO()
    assert local_predict.main(argv, out=out) == local_predict.EXIT_INVALID
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    err = capsys.readouterr().err
    # One object per instance line, in order; a rejected line's place names it and why.
    assert [p.get("line") for p in printed] == [None, 3, 4, 5, None]
    assert "mother_age: 99 is outside the valid range" in printed[1]["error"]
    assert "missing required feature 'plurality'" in printed[2]["error"]
    assert "malformed JSON" in printed[3]["error"]
    assert "line 3: mother_age: 99 is outside the valid range" in err
    assert "read 5, predicted 2, rejected 3" in err
    table_as_model = {"is_male": features.IS_MALE_FALSE, "mother_age": 31,
                      "plurality": features.PLURALITY_NAMES[1], "gestation_weeks": 37}
    expected = server_predictions(shared_server, [COURSE, table_as_model])
    np.testing.assert_allclose(_float32([printed[0][LABEL], printed[4][LABEL]]),
                               _float32(expected), **TOLERANCE)
    allowed = local_predict.main([*argv, "--max-error-rate", "0.6"], out=io.StringIO())
    assert allowed == 0 and "rejected 3" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# batch_predict on files
# ------------------------------------------------------------------------------------------------

def test_batch_predict_jsonl_keeps_order_key_features_label(
        serving_models: ServingModels, shared_server: RunningServer, model_dir: str,
        tmp_path: pathlib.Path, capsys: Any) -> None:
    instances = serving_models.instances[:30]
    expected = server_predictions(shared_server, instances)
    # Row numbers as keys, labels, an extra (ignored) column, and one invalid row in the middle.
    rows: List[Any] = [{**i, LABEL: 5.0 + n / 10, "state": "CA"} for n, i in enumerate(instances)]
    rows.insert(12, {**instances[0], "mother_age": "old"})
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    code, printed, _ = _run(["--model-dir", model_dir, "--input", str(jsonl), "--output",
                             str(out), "--batch-size", "8", "--max-error-rate", "0.05"], capsys)
    assert code == 0
    assert f"Read {len(rows)} rows: {len(instances)} predicted" in printed
    assert "1 rejected" in printed
    got = _read_output(out)
    keys = [n for n in range(len(rows)) if n != 12]
    assert [g["key"] for g in got] == keys  # input order, the rejected row's number skipped
    for record, row in zip(got, [r for n, r in enumerate(rows) if n != 12]):
        assert list(record) == ["key", *features.FEATURE_NAMES, LABEL, PREDICTED]
        assert record[LABEL] == row[LABEL]
        assert {k: record[k] for k in features.FEATURE_NAMES} == {
            k: row[k] for k in features.FEATURE_NAMES}
    np.testing.assert_allclose(_float32([g[PREDICTED] for g in got]), _float32(expected),
                               **TOLERANCE)
    errors = _errors(out)
    assert len(errors) == 1 and (errors[0]["key"], errors[0]["line"]) == (12, 13)
    assert "mother_age" in errors[0]["error"] and "expected a number" in errors[0]["error"]


def test_batch_predict_csv_rejects_wide_rows_and_missing_plurality(
        serving_models: ServingModels, shared_server: RunningServer, model_dir: str,
        tmp_path: pathlib.Path, capsys: Any) -> None:
    instances = serving_models.instances[:10]
    expected = server_predictions(shared_server, instances)
    source = tmp_path / "in.csv"
    columns = ["key", *features.FEATURE_NAMES]
    with open(source, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for index, instance in enumerate(instances):
            writer.writerow([f"birth-{index}", *(instance[c] for c in features.FEATURE_NAMES)])
            if index == 3:  # line 6: one field more than the header
                writer.writerow(["wide", *(instance[c] for c in features.FEATURE_NAMES), "x"])
            if index == 6:  # line 10: plurality left empty
                writer.writerow(["no-plurality", *("" if c == "plurality" else instance[c]
                                                   for c in features.FEATURE_NAMES)])
    out = tmp_path / "out.csv"
    code, printed, err = _run(["--model-dir", model_dir, "--input", str(source),
                               "--output", str(out)], capsys)
    assert code == batch_predict.instances.EXIT_REJECTED
    assert f"Read {len(instances) + 2} rows: {len(instances)} predicted" in printed
    assert "2 of 12 rows rejected" in err
    assert out.read_text().splitlines()[0] == ",".join(batch_predict.CSV_COLUMNS)
    got = _read_output(out)
    assert [g["key"] for g in got] == [f"birth-{i}" for i in range(len(instances))]
    assert all(g[LABEL] == "" for g in got)  # no label in the input: an empty column
    np.testing.assert_allclose(_float32([float(g[PREDICTED]) for g in got]),
                               _float32(expected), **TOLERANCE)
    errors = _errors(out)
    assert [(e["key"], e["line"]) for e in errors] == [(4, 6), ("no-plurality", 10)]
    assert "has 6 fields, the header has 5" in errors[0]["error"]
    assert "plurality" in errors[1]["error"] and "required" in errors[1]["error"]


def test_batch_predict_reads_table_rows_through_the_query_mapping(
        small_warehouse: pathlib.Path, shared_server: RunningServer, model_dir: str,
        tmp_path: pathlib.Path, capsys: Any) -> None:
    """1,000 natality rows as the table stores them: plurality 1..5, is_male a BOOL."""
    export = tmp_path / "natality.csv"
    _export(small_warehouse, _in_range_rows(1000), export, "HEADER")
    with open(export, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1000 and {r["is_male"] for r in rows} == {"true", "false"}
    out = tmp_path / "predictions.jsonl"
    code, printed, _ = _run(["--model-dir", model_dir, "--input", str(export), "--output",
                             str(out)], capsys)
    assert code == 0 and "Read 1000 rows: 1000 predicted" in printed and "0 rejected" in printed
    got = _read_output(out)
    expected_instances = [_table_instance(r) for r in rows]
    assert [g["key"] for g in got] == list(range(1000))
    assert [{k: g[k] for k in features.FEATURE_NAMES} for g in got] == expected_instances
    # The label when the row has one (the table has births without a recorded weight).
    assert [g.get(LABEL) for g in got] == [float(r[LABEL]) if r[LABEL] else None for r in rows]
    np.testing.assert_allclose(_float32([g[PREDICTED] for g in got]),
                               _float32(server_predictions(shared_server, expected_instances)),
                               **TOLERANCE)


# ------------------------------------------------------------------------------------------------
# batch_predict through the training query
# ------------------------------------------------------------------------------------------------

def test_batch_predict_scores_an_export_once_per_row_with_filter_rejections(
        small_warehouse: pathlib.Path, shared_server: RunningServer, model_dir: str,
        tmp_path: pathlib.Path, capsys: Any) -> None:
    export = tmp_path / "export.parquet"
    # Every 25th row gets a weight of 0, which the training query's WHERE drops.
    valid = _in_range_rows(200, "year > 2000 AND weight_pounds > 0")
    _export(small_warehouse, "SELECT * EXCLUDE (n) REPLACE (CASE WHEN n % 25 = 0 THEN 0 ELSE "
            "weight_pounds END AS weight_pounds) FROM (SELECT *, row_number() OVER () - 1 AS n "
            f"FROM ({valid}))", export, "FORMAT PARQUET")
    with duckdb.connect() as connection:
        rows = connection.execute(f"SELECT * FROM read_parquet('{export}')").fetchdf()
    zero = [n for n in range(len(rows)) if rows["weight_pounds"][n] == 0]
    assert len(rows) == 200 and len(zero) == 8
    out = tmp_path / "scored.jsonl"
    argv = ["--model-dir", model_dir, "--source", str(export), "--output", str(out)]
    code, printed, err = _run(argv, capsys)
    assert code == batch_predict.instances.EXIT_REJECTED and "8 of 200 rows rejected" in err
    code, printed, _ = _run([*argv, "--max-error-rate", "0.04"], capsys)
    assert code == 0 and "Read 200 rows: 192 predicted" in printed  # no "no ultrasound" copies
    errors = _errors(out)
    assert [e["key"] for e in errors] == zero
    assert {e["error"] for e in errors} == {"fails the training query's filter weight_pounds > 0"}
    got = _read_output(out)
    kept = [n for n in range(len(rows)) if n not in zero]
    assert [g["key"] for g in got] == kept
    instances = [_table_instance(rows.iloc[n].to_dict()) for n in kept]
    assert [{k: g[k] for k in features.FEATURE_NAMES} for g in got] == instances
    np.testing.assert_allclose(_float32([g[PREDICTED] for g in got]),
                               _float32(server_predictions(shared_server, instances)),
                               **TOLERANCE)


def test_batch_predict_reads_one_split_of_the_warehouse(
        small_warehouse: pathlib.Path, model_dir: str, tmp_path: pathlib.Path,
        capsys: Any) -> None:
    limit = 25
    rows = list(batch_input.read_query(str(small_warehouse), None, "test", limit))
    assert len(rows) == limit
    out = tmp_path / "warehouse.csv"
    code, printed, _ = _run(["--model-dir", model_dir, "--warehouse", str(small_warehouse),
                             "--split", "test", "--limit", str(limit), "--output", str(out)],
                            capsys)
    assert code == 0, printed
    decided = [batch_predict.instances.decide(*row) for row in rows]
    accepted = [d for d in decided if isinstance(d, batch_predict.instances.Accepted)]
    # A split holds only rows that pass the query's filters: nothing in it is rejected.
    assert len(accepted) == limit, [d for d in decided if d not in accepted]
    assert f"Read {limit} rows: {len(accepted)} predicted" in printed
    assert [int(g["key"]) for g in _read_output(out)] == [a.index for a in accepted]
    code, _, err = _run(["--model-dir", model_dir, "--warehouse", str(small_warehouse),
                         "--split", "nope", "--output", str(out)], capsys)
    assert code == 1 and "--split must be one of" in err


def test_batch_predict_with_nothing_to_predict_says_so_and_fails(
        model_dir: str, tmp_path: pathlib.Path, capsys: Any) -> None:
    """A header-only result with exit code 0 and no count was how a lost run looked."""
    source = tmp_path / "empty.csv"
    source.write_text(",".join(features.FEATURE_NAMES) + "\n")
    out = tmp_path / "out.csv"
    code, printed, err = _run(["--model-dir", model_dir, "--input", str(source), "--output",
                               str(out)], capsys)
    assert code == batch_predict.instances.EXIT_REJECTED
    assert "Read 0 rows: 0 predicted" in printed and "no rows to predict were read" in err
    missing = _run(["--model-dir", model_dir, "--input", str(tmp_path / "nope.csv"),
                    "--output", str(out)], capsys)
    assert missing[0] == 1 and "does not exist" in missing[2]
    folder = _run(["--model-dir", model_dir, "--input", str(tmp_path), "--output", str(out)],
                  capsys)
    assert folder[0] == 1 and f"--input {tmp_path} is a directory" in folder[2]
    assert "Traceback" not in folder[2]


def test_batch_predict_writes_an_output_named_without_a_directory(
        serving_models: ServingModels, model_dir: str, tmp_path: pathlib.Path,
        monkeypatch: Any, capsys: Any) -> None:
    """`--output predictions.jsonl`, as the README writes it: the file lands in the cwd."""
    monkeypatch.chdir(tmp_path)
    pathlib.Path("in.jsonl").write_text(json.dumps(serving_models.instances[0]) + "\n")
    code, printed, _ = _run(["--model-dir", model_dir, "--input", "in.jsonl", "--output",
                             "predictions.jsonl"], capsys)
    assert code == 0, printed
    assert len(_read_output(tmp_path / "predictions.jsonl")) == 1


def _predict_with_log(model_dir: str, instances: List[Dict[str, Any]], tmp_path: pathlib.Path,
                      log_dir: pathlib.Path, capsys: Any) -> Tuple[int, str, pathlib.Path]:
    """Batch prediction of `instances` from a JSON-lines file, logging to `log_dir`; returns
    the exit code, what it printed (stdout and stderr) and the predictions file."""
    jsonl, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    jsonl.write_text("\n".join(json.dumps(i) for i in instances) + "\n")
    code, printed, errors = _run(["--model-dir", model_dir, "--input", str(jsonl), "--output",
                                  str(out), "--request-log-dir", str(log_dir)], capsys)
    return code, printed + errors, out


def test_batch_predict_writes_the_request_log_monitoring_reads(
        serving_models: ServingModels, model_dir: str, tmp_path: pathlib.Path,
        capsys: Any) -> None:
    from monitoring import logs as monitoring_logs
    from serving import request_log

    instances = serving_models.instances[:20]
    log_dir = tmp_path / "log"
    code, printed, out = _predict_with_log(model_dir, instances, tmp_path, log_dir, capsys)
    assert code == 0, printed
    logged = monitoring_logs.read(request_log.complete_files(log_dir))
    predicted = {g["key"]: g[PREDICTED] for g in _read_output(out)}
    assert len(logged) == len(instances)
    np.testing.assert_allclose(np.sort(logged[request_log.PREDICTION_KEY].to_numpy()),
                               np.sort(_float32(list(predicted.values()))), **TOLERANCE)
    assert set(logged[request_log.VERSION_KEY]) == {max(int(p.name) for p in
                                                        pathlib.Path(model_dir).iterdir()
                                                        if p.name.isdigit())}


def test_a_request_log_that_drops_rows_fails_the_job_and_keeps_the_predictions(
        serving_models: ServingModels, model_dir: str, tmp_path: pathlib.Path,
        capsys: Any) -> None:
    instances = serving_models.instances[:7]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, printed, out = _predict_with_log(model_dir, instances, tmp_path, blocker / "log",
                                           capsys)
    assert code == 1, printed
    assert f"dropped {len(instances)} of {len(instances)} sampled rows" in printed
    assert "Traceback" not in printed
    assert len(_read_output(out)) == len(instances)

