"""TF Serving's warmup file: the export writes it from eval rows, the server replays it."""
from __future__ import annotations

import pathlib
import shutil

import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2

from modules import features
from modules import warmup as writer
from serving import model_store
from serving import warmup
from tests.serving_fixtures import ServingModels

pytest_plugins = ("tests.serving_fixtures",)


def test_export_carries_warmup_requests_built_from_eval_rows(
        serving_models: ServingModels) -> None:
    export = str(serving_models.exports[1])
    requests = list(warmup.read_requests(export))
    rows = len(serving_models.instances)  # every eval row, while they are fewer than the cap
    assert 0 < len(requests) <= writer.MAX_WARMUP_RECORDS
    assert {signature for signature, _ in requests} == {writer.WARMUP_SIGNATURE}
    examples = [e for _, columns in requests for e in columns["examples"]]
    assert len(examples) == min(rows, writer.MAX_WARMUP_RECORDS * writer.WARMUP_BATCH)
    for raw in examples:
        parsed = example_pb2.Example.FromString(raw).features.feature
        assert set(features.FEATURE_NAMES) <= set(parsed)
        plurality = parsed[features.PLURALITY.name].bytes_list.value[0].decode()
        assert plurality in features.PLURALITY.vocabulary


def test_a_version_replays_its_warmup_file_and_a_bad_one_fails_the_load(
        serving_models: ServingModels, tmp_path: pathlib.Path) -> None:
    export = serving_models.exports[1]
    loaded = model_store.load_version(1, str(export))
    assert warmup.replay(loaded) == len(list(warmup.read_requests(str(export))))

    broken = tmp_path / "broken"
    shutil.copytree(export, broken)
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "no_such_signature"
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto([b""], dtype=tf.string))
    with tf.io.TFRecordWriter(str(broken / writer.WARMUP_FILE)) as out:
        out.write(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())
    with pytest.raises(ValueError, match="no_such_signature"):
        model_store.load_version(2, str(broken))


def test_at_most_the_cap_of_requests_is_written(tmp_path: pathlib.Path) -> None:
    many = [b""] * ((writer.MAX_WARMUP_RECORDS + 5) * writer.WARMUP_BATCH)
    assert writer.write_warmup(str(tmp_path), many) == writer.MAX_WARMUP_RECORDS
    assert len(list(warmup.read_requests(str(tmp_path)))) == writer.MAX_WARMUP_RECORDS


def test_the_export_s_file_holds_up_to_the_cap_of_requests_of_eval_rows(
        tmp_path: pathlib.Path) -> None:
    """More eval rows than one request per row of the cap: the file fills all its requests
    (the cap counts requests of WARMUP_BATCH rows each), in the rows' order."""
    rows = (writer.MAX_WARMUP_RECORDS + 3) * writer.WARMUP_BATCH
    eval_file = tmp_path / "eval.tfrecord"
    with tf.io.TFRecordWriter(str(eval_file)) as out:
        for number in range(rows):
            out.write(f"row {number}".encode())
    export = tmp_path / "export"
    assert writer.write_from_eval(str(export), [str(eval_file)]) == writer.MAX_WARMUP_RECORDS
    examples = [e for _, columns in warmup.read_requests(str(export))
                for e in columns["examples"]]
    assert examples == [f"row {n}".encode() for n in range(writer.MAX_WARMUP_EXAMPLES)]
