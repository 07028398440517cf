"""A new month in the warehouse re-runs ExampleGen and is read; no new data reuses the cache.

TFX's own LocalDagRunner, driver, cache and metadata store run for real, on a pipeline of the
ExampleGen alone: the cache decision is the ExampleGen's, and the rest of the pipeline only
follows its output.
"""
import hashlib
import pathlib
import shutil
from typing import Dict

import pytest
import tensorflow as tf

from pipelines import pipeline
from pipelines.components.duckdb_example_gen.component import DuckDBExampleGen
from pipelines.config import DataConfig
from reports import mlmd
from tests.test_spans import append_month
from warehouse import spans

pytestmark = pytest.mark.slow

NODE = "DuckDBExampleGen"


def run_example_gen(base: pathlib.Path, database: pathlib.Path) -> mlmd.ComponentRun:
    """One run of a pipeline holding the ExampleGen; the ExampleGen's record of that run."""
    from tfx.orchestration import metadata
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    data = DataConfig()
    example_gen = DuckDBExampleGen(pipeline.input_config(data), database=database,
                                   range_config=pipeline.range_config(data),
                                   span_settings=data.split_layout())
    LocalDagRunner().run(tfx_pipeline.Pipeline(
        pipeline_name="spans", pipeline_root=str(base / "root"), components=[example_gen],
        enable_cache=True, metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(base / "metadata.sqlite"))))
    newest_run = mlmd.list_runs(mlmd.open_store(base / "metadata.sqlite"))[0]
    return newest_run.component(NODE)


def hashmonths_read(examples: mlmd.ArtifactRef) -> set:
    files = tf.io.gfile.glob(f"{examples.uri}/Split-*/*.gz")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return {tf.train.Example.FromString(r.numpy()).features.feature["hashmonth"].int64_list.value[0]
            for r in dataset}


def file_digests(examples: mlmd.ArtifactRef) -> Dict[str, str]:
    """Each file of the artifact (by path under its URI) and the SHA-256 of its bytes."""
    root = pathlib.Path(examples.uri)
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_new_month_reruns_example_gen_and_same_data_is_cached(small_warehouse, tmp_path):
    database = pathlib.Path(shutil.copy(small_warehouse, tmp_path / "natality.duckdb"))
    newest = spans.read_spans(database)[-1].number

    first = run_example_gen(tmp_path, database)
    assert first.state == "COMPLETE"
    first_examples = first.outputs["examples"][0]
    assert first_examples.properties["span"] == newest
    first_files = file_digests(first_examples)
    assert first_files

    new_span = newest + 89  # December 2008 -> January 2009
    assert append_month(database, new_span, like=newest) > 0
    second = run_example_gen(tmp_path, database)
    assert second.state == "COMPLETE", "new data must re-run the ExampleGen"
    second_examples = second.outputs["examples"][0]
    assert second_examples.properties["span"] == new_span
    assert second_examples.properties["input_fingerprint"] != (
        first_examples.properties["input_fingerprint"])
    new_month = spans.hashmonth(new_span)
    assert new_month in hashmonths_read(second_examples)
    # Written before the month was appended, and not a byte changed since: the second run wrote
    # its own examples, the first run's do not hold the new month.
    assert file_digests(first_examples) == first_files
    second_files = file_digests(second_examples)

    third = run_example_gen(tmp_path, database)
    assert third.state == "CACHED", "the same data must reuse the cached examples"
    assert third.outputs["examples"][0].id == second_examples.id
    assert file_digests(third.outputs["examples"][0]) == second_files, "reused, not rewritten"
