"""A warehouse file another process writes (`warehouse.months` appending) is waited for a
little, then one line naming the file and that another process holds it, never DuckDB's
IOException as a traceback from inside the run."""
import contextlib
import pathlib
import subprocess
import sys
import threading
import time

import pytest

import local_runner
from common.errors import WarehouseBusyError
from warehouse import engine, generator

pytest_plugins = ("tests.serving_fixtures",)

HOLD = ("import duckdb, sys\n"
        "connection = duckdb.connect(sys.argv[1])\n"
        "connection.execute('BEGIN TRANSACTION')\n"
        "print('held', flush=True)\n"
        "sys.stdin.readline()\n"
        "connection.close()\n")


@contextlib.contextmanager
def held(database: pathlib.Path):
    """A process holding a write connection on `database` (DuckDB's file lock) until the
    block ends; the lock is held before the block starts."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(database)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("locked") / "natality.duckdb"
    generator.generate(path, rows=500, seed=3)
    return path


def test_a_held_file_is_one_error_naming_it_after_a_bounded_wait(database, monkeypatch):
    monkeypatch.setattr(engine, "LOCK_WAIT_SECONDS", 0.5)
    with held(database) as holder:
        started = time.monotonic()
        with pytest.raises(WarehouseBusyError) as raised:
            engine.connect(database)
        assert time.monotonic() - started >= 0.5
    message = str(raised.value)
    assert message.count("\n") == 0 and str(database) in message, message
    assert "held by another process" in message and f"PID {holder.pid}" in message, message


def test_a_writer_that_finishes_within_the_wait_is_waited_for(database, monkeypatch):
    monkeypatch.setattr(engine, "LOCK_WAIT_SECONDS", 30.0)
    with held(database) as holder:
        threading.Timer(1.0, holder.stdin.close).start()  # the append commits and closes
        connection = engine.connect(database)
    try:
        assert connection.execute("SELECT count(*) FROM natality").fetchone() == (500,)
    finally:
        connection.close()


def test_the_runner_says_the_file_is_held_in_one_line(database, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(engine, "LOCK_WAIT_SECONDS", 0.3)
    with held(database):
        code = local_runner.main(["--database", str(database), "--seed", "3",
                                  "--pipeline-root", str(tmp_path / "root"),
                                  "--reports-dir", str(tmp_path / "reports"),
                                  "--metadata-path", str(tmp_path / "m.sqlite"),
                                  "--serving-dir", str(tmp_path / "serving" / "babyweight")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"local_runner.py: error: the warehouse {database} is held by "
                          "another process"), err
    assert "warehouse.months" in err, err


def test_the_pre_flight_check_does_not_take_a_held_file_for_bad_data(database, monkeypatch):
    monkeypatch.setattr(engine, "LOCK_WAIT_SECONDS", 0.3)
    with held(database), pytest.raises(WarehouseBusyError):
        local_runner.usable_rows(local_runner.config.WarehouseConfig(database=database))


@pytest.mark.parametrize("command", ["eda", "schema", "batch"])
def test_each_command_reading_the_warehouse_says_it_is_held_in_one_line(
        command, database, tmp_path, capsys, monkeypatch, stand_in_models):
    from pipelines import schema
    from reports import eda
    from serving import batch_predict

    monkeypatch.setattr(engine, "LOCK_WAIT_SECONDS", 0.3)
    out = tmp_path / "out"
    run = {"eda": lambda: eda.main(["--database", str(database), "--out", str(out)]),
           "schema": lambda: schema.main(["infer", "--database", str(database),
                                          "--out", str(out)]),
           "batch": lambda: batch_predict.main([
               "--model-dir", str(stand_in_models.serving_dir(tmp_path)),
               "--warehouse", str(database), "--output", str(out)])}[command]
    with held(database):
        code = run()
    err = capsys.readouterr().err  # the stand-in model's log line may come first
    failure = [line for line in err.splitlines() if " WARNING " not in line]
    assert code == 1 and len(failure) == 1 and "Traceback" not in err, err
    assert failure[0].startswith(f"error: the warehouse {database} is held by another "
                                 "process"), err
    assert not out.exists()


def test_batch_prediction_held_out_during_its_run_says_it_in_one_line(
        database, tmp_path, capsys, monkeypatch, stand_in_models):
    """The writer may take the file between the launcher's check and the workers' read."""
    from serving import batch_predict

    monkeypatch.setattr(engine, "LOCK_WAIT_SECONDS", 0.3)
    monkeypatch.setattr(batch_predict, "check_readable", lambda *_: None)
    out = tmp_path / "out.csv"
    with held(database):
        code = batch_predict.main(["--model-dir", str(stand_in_models.serving_dir(tmp_path)),
                                   "--warehouse", str(database), "--output", str(out)])
    # Beam logs the failed bundle first; the command's own word on it is one line, the last.
    failure = [line for line in capsys.readouterr().err.splitlines()
               if line.startswith("error: ")]
    assert code == 1 and len(failure) == 1, failure
    assert failure[0].startswith(f"error: the warehouse {database} is held by another "
                                 "process"), failure
    assert not out.exists()


def test_a_held_file_after_the_push_leaves_the_run_s_outcome_as_it_was(
        database, tmp_path, caplog, monkeypatch):
    """The floor is only a log line: the model was judged and pushed before it is read."""
    import json
    import logging

    monkeypatch.setattr(engine, "LOCK_WAIT_SECONDS", 0.3)
    push = tmp_path / "push.json"
    push.write_text(json.dumps({"eval_rmse": 1.1, "eval_mae": 0.9, "blessed": True,
                                "message": "Pushed version 7.", "reasons": []}))
    warehouse = local_runner.config.WarehouseConfig(database=database)
    with held(database), caplog.at_level(logging.INFO):
        started = time.monotonic()
        assert local_runner.report_outcome(push, warehouse) == 0
        assert time.monotonic() - started < 0.3  # not waited for
    assert "irreducible error is not quoted: the warehouse" in caplog.text
    assert "Eval RMSE 1.1000 lb" in caplog.text and "Pushed version 7." in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):  # free: the floor is quoted as before
        assert local_runner.report_outcome(push, warehouse) == 0
    assert "irreducible error of the data" in caplog.text
