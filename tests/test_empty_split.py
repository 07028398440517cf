"""DuckDBExampleGen on edge-case data: an empty split stops the run, integral floats stay ints."""
import shutil

import duckdb
import pytest

from pipelines import pipeline
from pipelines.components.duckdb_example_gen import executor
from pipelines.components.duckdb_example_gen.component import DuckDBExampleGen
from pipelines.config import DataConfig
from common.errors import DataValidationError
from tests.test_example_gen import read_examples, run_executor
from warehouse import engine, sql


def test_a_split_without_rows_stops_the_run(small_warehouse, tmp_path):
    database = tmp_path / "one_month.duckdb"
    shutil.copy(small_warehouse, database)
    connection = duckdb.connect(str(database))
    connection.execute("DELETE FROM natality WHERE NOT (year = 2005 AND month = 3)")
    connection.close()
    data = DataConfig()
    connection = engine.connect(database)
    empty = [name for name, statement in sql.split_queries(
        sql.base_query(), data.split_buckets(), data.hash_buckets).items()
        if not connection.execute(f"SELECT 1 FROM ({sql.to_duckdb(statement)}) LIMIT 1"
                                  ).fetchone()]
    connection.close()
    assert len(empty) == len(data.split_buckets()) - 1, "one month fills exactly one split"
    component = DuckDBExampleGen(pipeline.input_config(data), database=database)
    with pytest.raises(DataValidationError, match="no rows left after the query's filters") as \
            caught:
        run_executor(component, str(tmp_path / "examples"))
    assert isinstance(caught.value, executor.EmptySplitError)
    assert all(name in str(caught.value) for name in empty)


def test_integers_written_as_floats_become_integer_features(small_warehouse, tmp_path):
    export = tmp_path / "floats.parquet"
    connection = duckdb.connect(str(small_warehouse), read_only=True)
    connection.execute("COPY (SELECT * REPLACE (CAST(mother_age AS DOUBLE) AS mother_age, "
                       "CAST(gestation_weeks AS DOUBLE) AS gestation_weeks) FROM natality) "
                       f"TO '{export}' (FORMAT PARQUET)")
    connection.close()
    component = DuckDBExampleGen(pipeline.input_config(DataConfig()), database=small_warehouse,
                                 source=str(export))
    examples = run_executor(component, str(tmp_path / "examples"))
    (first,) = read_examples(examples.uri, "eval")[:1]
    for name in ("mother_age", "gestation_weeks"):
        assert first.features.feature[name].WhichOneof("kind") == "int64_list"
