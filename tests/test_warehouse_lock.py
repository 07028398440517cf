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
