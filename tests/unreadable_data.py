"""Data a command cannot read, one case each, as the flags that name it: the commands that read
the warehouse (reports.eda, pipelines.schema infer) each say what is wrong in one line."""
from __future__ import annotations

import pathlib
from typing import Dict, List

import duckdb

# Each case and what the command's message must say of it.
CASES: Dict[str, str] = {
    "missing_database": "no warehouse at",
    "csv_without_columns": '"year" not found',
    "glob_matching_nothing": "matches no file",
    "text_file_as_database": "not a valid DuckDB database file",
    "database_without_natality": "natality does not exist",
}


def flags(case: str, directory: pathlib.Path) -> List[str]:
    """The command-line flags naming the case's data, made in `directory`."""
    if case == "missing_database":
        return ["--database", str(directory / "nope.duckdb")]
    if case == "csv_without_columns":
        (directory / "export.csv").write_text("a,b\n1,2\n")
        return ["--source", str(directory / "export.csv")]
    if case == "glob_matching_nothing":
        return ["--source", str(directory / "natality-*.parquet")]
    if case == "text_file_as_database":
        (directory / "w.duckdb").write_text("not a database\n")
        return ["--database", str(directory / "w.duckdb")]
    assert case == "database_without_natality", case
    with duckdb.connect(str(directory / "w.duckdb")) as connection:
        connection.execute("CREATE TABLE births (year BIGINT)")
    return ["--database", str(directory / "w.duckdb")]


def assert_named_in_one_line(err: str, given: List[str], case: str) -> None:
    """stderr is one `error:` line naming the data the flags gave and what is wrong with it."""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert CASES[case] in err and given[1] in err and "Traceback" not in err, err
