"""The span driver on Vertex AI: the pre-cache-check hook, with BigQuery faked at the client."""
import json

import pytest
from google.cloud import bigquery
from google.protobuf import json_format

from pipelines import pipeline
from pipelines.components import vertex_span_driver
from pipelines.components.bigquery_example_gen import read_bigquery_spans
from pipelines.config import DataConfig
from warehouse import engine, spans, sql


class FakeBigQuery:
    """bigquery.Client answering spans.sql from the local warehouse, translated as locally."""

    database = None
    queries = []

    def __init__(self, project=None):
        self.project = project

    def query(self, statement):
        FakeBigQuery.queries.append((self.project, statement))
        cursor = engine.connect(self.database).execute(sql.to_duckdb(statement))
        names = {d[0]: i for i, d in enumerate(cursor.description)}
        rows = [bigquery.Row(values, names) for values in cursor.fetchall()]
        return type("Job", (), {"result": lambda _self: rows})()


@pytest.fixture()
def fake_bigquery(small_warehouse, monkeypatch):
    monkeypatch.setattr(bigquery, "Client", FakeBigQuery)
    monkeypatch.setattr(FakeBigQuery, "database", small_warehouse)
    monkeypatch.setattr(FakeBigQuery, "queries", [])
    return FakeBigQuery


def test_bigquery_runs_the_same_spans_sql_as_duckdb(fake_bigquery, small_warehouse):
    assert read_bigquery_spans("billing") == spans.read_spans(small_warehouse)
    assert fake_bigquery.queries == [("billing", spans.spans_query())]


def executor_input(tmp_path, data: DataConfig) -> str:
    """What Vertex AI passes as {{$}} to the ExampleGen (pipeline spec 2.0 parameters)."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    invocation = pipeline_spec_pb2.ExecutorInput()
    values = {"input_config": json_format.MessageToJson(pipeline.input_config(data)),
              "range_config": json_format.MessageToJson(pipeline.range_config(data)),
              "output_config": "{}"}
    for key, value in values.items():
        invocation.inputs.parameters[key].string_value = value
    examples = invocation.outputs.artifacts["examples"].artifacts.add()
    examples.name = "projects/p/locations/l/metadataStores/default/artifacts/1"
    examples.type.schema_title = "tfx.Examples"
    examples.uri = str(tmp_path / "examples")
    invocation.outputs.output_file = str(tmp_path / "task" / "executor_output.json")
    return json_format.MessageToJson(invocation)


def test_hook_writes_the_resolved_span_queries_and_fingerprint(fake_bigquery, small_warehouse,
                                                               tmp_path):
    data = DataConfig(num_spans=36)
    args = [vertex_span_driver.INVOCATION_FLAG, executor_input(tmp_path, data),
            vertex_span_driver.SETTINGS_FLAG, json.dumps(data.split_layout()),
            "--project=billing"]
    assert vertex_span_driver.main(args) == 0
    output = json.loads((tmp_path / "task" / "executor_output.json").read_text())
    chosen = spans.select(spans.read_spans(small_warehouse), newest=36)
    # Pipeline spec 2.0's executor reads `parameters`; 2.1's reads `parameterValues`.
    assert output["parameters"]["span"] == {"intValue": str(chosen[-1].number)}
    assert output["parameterValues"]["input_fingerprint"] == spans.fingerprint(chosen)
    splits = json.loads(output["parameters"]["input_config"]["stringValue"])["splits"]
    expected = sql.split_queries(sql.base_query(), data.split_buckets(), data.hash_buckets)
    assert {s["name"]: s["pattern"] for s in splits} == {
        name: spans.span_query(statement, chosen) for name, statement in expected.items()}
    examples = output["artifacts"]["examples"]["artifacts"][0]
    assert examples["metadata"]["custom:span"] == chosen[-1].number  # as TFX writes it
    assert fake_bigquery.queries[0][0] == "billing"


def test_hook_exits_2_in_words_when_the_spans_cannot_make_the_splits(fake_bigquery, tmp_path,
                                                                     capsys):
    data = DataConfig(num_spans=1)
    args = [vertex_span_driver.INVOCATION_FLAG, executor_input(tmp_path, data),
            vertex_span_driver.SETTINGS_FLAG, json.dumps(data.split_layout())]
    assert vertex_span_driver.main(args) == 2
    assert "no month in split(s)" in capsys.readouterr().err
    assert not (tmp_path / "task" / "executor_output.json").exists()
