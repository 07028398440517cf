"""DuckDBExampleGen writes the tf.Examples BigQueryExampleGen would write for the same query."""
import glob
import json
import logging
import os

import duckdb
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tfx.extensions.google_cloud_big_query import utils as bigquery_utils
from tfx.types import standard_artifacts

from pipelines import pipeline
from pipelines.components.duckdb_example_gen import executor
from pipelines.components.duckdb_example_gen.component import DuckDBExampleGen
from pipelines.config import DataConfig
from warehouse import engine, sql


def read_examples(uri: str, split: str):
    files = glob.glob(os.path.join(uri, f"Split-{split}", "*.gz"))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [tf.train.Example.FromString(record.numpy()) for record in dataset]


def run_executor(component: DuckDBExampleGen, out_dir: str,
                 output_config=None) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.uri = out_dir
    exec_properties = {
        key: (json_format.MessageToJson(value) if hasattr(value, "DESCRIPTOR") else value)
        for key, value in component.exec_properties.items()
    }
    if output_config is not None:
        exec_properties["output_config"] = json_format.MessageToJson(output_config)
    executor.Executor().Do({}, {"examples": [examples]}, exec_properties)
    return examples


# What these tests check holds for any number of rows (the train split still has several
# thousand examples, so several progress lines); the session's 20,000-row warehouse would make
# every ExampleGen run and read here several times as long.
ROWS = 3_000


@pytest.fixture(scope="module")
def few_rows(tmp_path_factory):
    """A generated natality DuckDB file of ROWS rows (seed 7), read-only for the tests."""
    from warehouse import generator

    path = tmp_path_factory.mktemp("warehouse") / "natality.duckdb"
    generator.generate(path, rows=ROWS, seed=7)
    return path


class _Kept(logging.Handler):
    """Keeps the records logged to it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def first_run(few_rows, tmp_path_factory):
    """The module's run of the default splits, with its progress lines kept (one every 1,000
    rows, so several on this small data): the component, its examples and the log records.
    The output does not depend on how often progress is logged."""
    component = DuckDBExampleGen(pipeline.input_config(DataConfig()), database=few_rows)
    out = str(tmp_path_factory.mktemp("examples"))
    logger, kept = logging.getLogger("babyweight.example_gen"), _Kept()
    level = logger.level
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(executor, "PROGRESS_EVERY_ROWS", 1000)
        logger.addHandler(kept)
        logger.setLevel(logging.INFO)
        try:
            examples = run_executor(component, out)
        finally:
            logger.removeHandler(kept)
            logger.setLevel(level)
    return component, examples, kept.records


@pytest.fixture(scope="module")
def generated(first_run):
    component, examples, _ = first_run
    return component, examples


def test_one_output_split_per_query_with_every_row(generated, few_rows):
    component, examples = generated
    data = DataConfig()
    connection = engine.connect(few_rows)
    assert json.loads(examples.split_names) == list(data.split_buckets())
    for name, statement in sql.split_queries(sql.base_query(), data.split_buckets(),
                                             data.hash_buckets).items():
        (expected,) = connection.execute(
            f"SELECT COUNT(*) FROM ({sql.to_duckdb(statement)})").fetchone()
        assert len(read_examples(examples.uri, name)) == expected


def test_examples_equal_bigquery_example_gen_conversion(generated, few_rows):
    """Same rows through BigQueryExampleGen's own row_to_example give identical protos."""
    _, examples = generated
    data = DataConfig()
    statement = sql.split_queries(sql.base_query(), data.split_buckets(),
                                  data.hash_buckets)["eval"]
    cursor = engine.connect(few_rows).execute(sql.to_duckdb(statement))
    arrow_types = {f.name: f.type for f in cursor.fetch_record_batch(1).schema}
    # Same statement again: a fresh cursor for the rows themselves.
    cursor = engine.connect(few_rows).execute(sql.to_duckdb(statement))
    names = [d[0] for d in cursor.description]
    bigquery_types = {name: executor.bigquery_type(arrow_types[name]) for name in names}
    assert bigquery_types == {"weight_pounds": "FLOAT", "is_male": "STRING",
                              "mother_age": "INTEGER", "plurality": "STRING",
                              "gestation_weeks": "INTEGER", "hashmonth": "INTEGER"}
    expected = [bigquery_utils.row_to_example(bigquery_types, dict(zip(names, row)))
                for row in cursor.fetchall()]
    # Same multiset of rows; the file's order is a fixed shuffle of the query's.
    assert sorted(read_examples(examples.uri, "eval"), key=str) == sorted(expected, key=str)


def test_nulls_and_booleans_convert_like_bigquery(tmp_path):
    database = tmp_path / "types.duckdb"
    connection = duckdb.connect(str(database))
    connection.execute("CREATE TABLE natality AS SELECT * FROM (VALUES "
                       "(1, 2.5::DOUBLE, 'a', TRUE), (NULL, NULL, NULL, NULL)) t(i, f, s, b)")
    connection.close()
    query = "SELECT i, f, s, b FROM `bigquery-public-data.samples.natality`"
    component = DuckDBExampleGen(
        pipeline.example_gen_pb2.Input(splits=[
            pipeline.example_gen_pb2.Input.Split(name="all", pattern=query)]),
        database=database)
    examples = run_executor(component, str(tmp_path / "out"))
    got = read_examples(examples.uri, "all")
    types = {"i": "INTEGER", "f": "FLOAT", "s": "STRING", "b": "BOOLEAN"}
    want = [bigquery_utils.row_to_example(types, {"i": 1, "f": 2.5, "s": "a", "b": True}),
            bigquery_utils.row_to_example(types, {"i": None, "f": None, "s": None, "b": None})]
    assert sorted(got, key=str) == sorted(want, key=str)


def test_hash_partitioned_output_splits_use_tfx_generic_path(few_rows, tmp_path):
    """One input query, output splits by TFX's hash buckets: every row lands exactly once."""
    query = sql.base_query()
    component = DuckDBExampleGen(
        pipeline.example_gen_pb2.Input(splits=[
            pipeline.example_gen_pb2.Input.Split(name="all", pattern=query)]),
        database=few_rows)
    output_config = pipeline.example_gen_pb2.Output(
        split_config=pipeline.example_gen_pb2.SplitConfig(splits=[
            pipeline.example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=3),
            pipeline.example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1)]))
    examples = run_executor(component, str(tmp_path / "out"), output_config)
    assert json.loads(examples.split_names) == ["train", "eval"]
    train, evaluation = read_examples(examples.uri, "train"), read_examples(examples.uri, "eval")
    (expected,) = engine.connect(few_rows).execute(
        f"SELECT COUNT(*) FROM ({sql.to_duckdb(query)})").fetchone()
    assert train and evaluation and len(train) + len(evaluation) == expected


def test_a_missing_column_fails_before_beam_naming_it(tmp_path):
    database = tmp_path / "narrow.duckdb"
    connection = duckdb.connect(str(database))
    connection.execute("CREATE TABLE natality AS SELECT 2005 AS year, 1 AS month")
    connection.close()
    component = DuckDBExampleGen(pipeline.input_config(DataConfig()), database=database)
    with pytest.raises(executor.MissingColumnError, match="weight_pounds|is_male|mother_age"):
        run_executor(component, str(tmp_path / "out"))


def test_rows_are_shuffled_deterministically(generated, few_rows, tmp_path):
    component, examples = generated
    again = run_executor(component, str(tmp_path / "again"))
    first, second = read_examples(examples.uri, "train"), read_examples(again.uri, "train")
    assert first == second
    # Known-sex rows and their "Unknown" copies are interleaved, not in two blocks.
    head = [e.features.feature["is_male"].bytes_list.value[0] for e in first[:200]]
    assert b"Unknown" in head and len(set(head)) == 3


def test_progress_lines_name_each_split_and_pass_the_log_filter(first_run):
    from common import logs

    _, examples, records = first_run
    lines = [r for r in records if r.name == "babyweight.example_gen"]
    assert all(logs._ProgressFilter().filter(r) for r in lines)
    for split in json.loads(examples.split_names):
        final = [r.getMessage() for r in lines
                 if r.getMessage().startswith(f"ExampleGen split {split}: ")
                 and "examples in" in r.getMessage()]
        assert len(final) == 1, (split, [r.getMessage() for r in lines])
        assert f": {len(read_examples(examples.uri, split))} examples in" in final[0]
    # The train split has more than 1000 rows: at least one intermediate line.
    assert any("rows written" in r.getMessage() for r in lines)
