"""Local predict and Beam batch prediction give the REST server's answers on the same rows."""
from __future__ import annotations

import csv
import io
import json
import pathlib
from typing import Any, Dict, List, Sequence

import httpx
import numpy as np
import pytest

from modules import features
from serving import batch_predict, local_predict
from tests.tolerances import prediction_abs
from tests.serving_fixtures import RunningServer, ServingModels

# Registered as a plugin (not imported by name) so session fixtures run once per session.
pytest_plugins = ("tests.serving_fixtures",)


def server_predictions(server: RunningServer, instances: Sequence[Dict[str, Any]]
                       ) -> List[float]:
    answer = httpx.post(server.predict_url(), json={"instances": list(instances)}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


def _float32(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# A row's answer may differ with the batch it ran in: see tests.tolerances.prediction_abs.
TOLERANCE = {"rtol": 0, "atol": prediction_abs()}


@pytest.fixture(scope="module")
def model_dir(shared_server: RunningServer) -> str:
    """The shared server's own model directory, so all three use the same version."""
    return str(shared_server.model_dir)


def test_local_predict_matches_server(serving_models: ServingModels,
                                      shared_server: RunningServer, model_dir: str,
                                      tmp_path: pathlib.Path, capsys: Any) -> None:
    instances = serving_models.instances[:20]
    course = {"is_male": True, "mother_age": 26, "plurality": "Single(1)", "gestation_weeks": 39}
    path = tmp_path / "instances.jsonl"
    path.write_text("\n".join(json.dumps(i) for i in [*instances, course]) + "\n\n")
    out = io.StringIO()
    assert local_predict.main(["--model-dir", model_dir, "--json-instances", str(path),
                               "--batch-size", "7"], out=out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(list(line) == [features.LABEL_KEY] for line in lines)
    expected = server_predictions(shared_server, [*instances, course])
    np.testing.assert_allclose(_float32([line[features.LABEL_KEY] for line in lines]),
                                  _float32(expected), **TOLERANCE)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(course) + "\n\n" + json.dumps({**course, "mother_age": 99}) + "\n")
    assert local_predict.main(["--model-dir", model_dir, "--json-instances", str(bad)],
                              out=io.StringIO()) == local_predict.EXIT_INVALID
    message = capsys.readouterr().err
    assert "line 3: mother_age: 99 is outside the valid range" in message


def _read_output(path: pathlib.Path) -> Dict[Any, float]:
    if path.suffix == ".csv":
        with open(path, newline="") as handle:
            return {row["key"]: float(row[features.LABEL_KEY]) for row in csv.DictReader(handle)}
    return {record["key"]: record[features.LABEL_KEY]
            for record in map(json.loads, path.read_text().splitlines())}


def test_batch_predict_jsonl_and_csv_match_server(serving_models: ServingModels,
                                                  shared_server: RunningServer, model_dir: str,
                                                  tmp_path: pathlib.Path) -> None:
    instances = serving_models.instances[:30]
    expected = server_predictions(shared_server, instances)
    # JSON lines: row numbers as keys, an extra (ignored) column, and one invalid row.
    jsonl = tmp_path / "in.jsonl"
    rows = [{**i, features.LABEL_KEY: 7.0} for i in instances]
    rows.append({**instances[0], "mother_age": "old"})
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    assert batch_predict.main(["--model-dir", model_dir, "--input", str(jsonl), "--output",
                               str(out), "--batch-size", "8"]) == 0
    got = _read_output(out)
    assert sorted(got) == list(range(len(instances)))
    np.testing.assert_allclose(_float32([got[i] for i in range(len(instances))]),
                                  _float32(expected), **TOLERANCE)
    errors = [json.loads(line) for line in
              pathlib.Path(str(out) + batch_predict.ERRORS_SUFFIX).read_text().splitlines()]
    assert len(errors) == 1 and errors[0]["key"] == len(instances)
    assert "mother_age" in errors[0]["error"] and "expected a number" in errors[0]["error"]

    # CSV with a key column -> CSV.
    source = tmp_path / "in.csv"
    with open(source, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["key", *features.FEATURE_NAMES])
        writer.writeheader()
        for index, instance in enumerate(instances):
            writer.writerow({"key": f"birth-{index}", **instance})
    out_csv = tmp_path / "out.csv"
    assert batch_predict.main(["--model-dir", model_dir, "--input", str(source), "--output",
                               str(out_csv)]) == 0
    assert out_csv.read_text().splitlines()[0] == f"key,{features.LABEL_KEY}"
    got_csv = _read_output(out_csv)
    np.testing.assert_allclose(
        _float32([got_csv[f"birth-{i}"] for i in range(len(instances))]), _float32(expected),
        **TOLERANCE)


def test_batch_predict_reads_the_warehouse_query(small_warehouse: pathlib.Path,
                                                 shared_server: RunningServer, model_dir: str,
                                                 tmp_path: pathlib.Path) -> None:
    limit = 25
    rows = list(batch_predict.read_warehouse(str(small_warehouse), "test", limit))
    assert len(rows) == limit
    instances = [{name: row[name] for name in features.FEATURE_NAMES} for _, row in rows]
    expected = server_predictions(shared_server, instances)
    out = tmp_path / "warehouse.jsonl"
    assert batch_predict.main(["--model-dir", model_dir, "--warehouse", str(small_warehouse),
                               "--split", "test", "--limit", str(limit), "--output",
                               str(out)]) == 0
    got = _read_output(out)
    np.testing.assert_allclose(_float32([got[key] for key, _ in rows]), _float32(expected),
                               **TOLERANCE)
