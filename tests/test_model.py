"""The Trainer's run_fn end to end on a small synthetic set, and the exported signatures.

The model under test is version 1 of the run's shared models (tests/model_fixtures.py: rows of
a known formula, Transform run for real on them, run_fn at the default network and batch), so
the skew test compares serving against Transform's own output. The tests that train again
(same seed, warm start, the tuner) read the same Transform output.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Dict, Iterator, List


import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras  # noqa: E402
from tfx.components.trainer.fn_args_utils import FnArgs  # noqa: E402
from tfx_bsl.public import tfxio  # noqa: E402

from modules import contract, export, features, model_input, network, training  # noqa: E402
from modules import model as babyweight_model  # noqa: E402
from modules import preprocessing as pp, warm_start as warm_starting  # noqa: E402
from modules.hparams import HyperParameters  # noqa: E402
from tests import model_fixtures  # noqa: E402
from tests.model_fixtures import (HPARAMS, SEEDS, TrainedModels, eval_rows, make_fn_args,  # noqa: E402
                                  train_rows)
from tests.test_preprocessing import Row, raw_row, read_transformed  # noqa: E402
from tests.tolerances import EPS32, EPS64, gamma, mean_rel, prediction_abs  # noqa: E402

# Registered as a plugin (not imported by name) so the session fixture runs once per session.
pytest_plugins = ("tests.model_fixtures",)


@dataclasses.dataclass
class Trained:
    work: pathlib.Path  # the Transform output every training here reads (model_fixtures)
    eval_rows: List[Row]
    eval_transformed: List[Row]
    tf_transform_output: tft.TFTransformOutput
    serving_dir: str
    fn_args: FnArgs


@pytest.fixture(scope="module", autouse=True)
def as_the_local_runner_trains() -> Iterator[None]:
    """The tests that train again do it as the shared models were trained, as the local
    runner trains (tests/model_fixtures.py: the heap frozen, AutoGraph's rule)."""
    with model_fixtures.as_the_local_runner_trains():
        yield


@pytest.fixture(scope="module")
def trained(trained_models: TrainedModels) -> Trained:
    """Version 1 of the shared models (tests/model_fixtures.py) and its Transform output."""
    output = tft.TFTransformOutput(str(trained_models.work / "transform_graph"))
    eval_transformed = read_transformed(str(trained_models.work / "eval" / "*.gz"), output)
    return Trained(trained_models.work, eval_rows(), eval_transformed, output,
                   str(trained_models.exports[1]), trained_models.fn_args(1))


@pytest.fixture(scope="module")
def loaded(trained: Trained):
    return tf.saved_model.load(trained.serving_dir)


@pytest.fixture(scope="module")
def exported_keras(trained: Trained) -> tf_keras.Model:
    """The export as Keras revives it (as a warm start reads it); only read."""
    return tf_keras.models.load_model(trained.serving_dir, compile=False)


def _label(row: Row) -> np.float32:
    value = row[features.LABEL_KEY]
    return np.float32(value[0] if isinstance(value, list) else value)


def raw_request(rows: List[Row]) -> Dict[str, tf.Tensor]:
    """serving_default's inputs for `rows` (numerics as the float32 a JSON request gives)."""
    request = {f.name: tf.constant([r[f.name][0] for r in rows], tf.string)
               for f in features.CATEGORICAL_FEATURES}
    request.update({f.name: tf.constant([float(r[f.name][0]) for r in rows], tf.float32)
                    for f in features.NUMERIC_FEATURES})
    return request


def serialized_examples(rows: List[Row]) -> tf.Tensor:
    """Full raw rows (label and split key included, as TFMA sees them) as tf.Examples."""
    def feature(value: object) -> tf.train.Feature:
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        if isinstance(value, float):
            return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    return tf.constant([
        tf.train.Example(features=tf.train.Features(
            feature={key: feature(values[0]) for key, values in row.items()})).SerializeToString()
        for row in rows])


def serve(loaded, rows: List[Row]) -> np.ndarray:
    outputs = loaded.signatures[contract.SERVING_DEFAULT](**raw_request(rows))
    return outputs[contract.OUTPUT_KEY].numpy()


def test_serving_matches_transform_output(trained: Trained, loaded, exported_keras) -> None:
    """No training/serving skew: raw requests through the exported graph == Keras on TFT output."""
    batch = {key: tf.constant([row[key] for row in trained.eval_transformed])
             for key in exported_keras.input_names}
    from_transform = exported_keras(batch, training=False).numpy().reshape(-1)
    # Beam does not keep row order; the label (passed through untransformed) pairs the rows.
    by_label = {_label(row): row for row in trained.eval_rows}
    assert len(by_label) == len(trained.eval_rows)
    raw_rows = [by_label[_label(row)] for row in trained.eval_transformed]
    # The same float32 transformed features into the same model, in other batches.
    np.testing.assert_allclose(serve(loaded, raw_rows), from_transform, rtol=0,
                               atol=prediction_abs())


def test_tf_example_signature_matches_serving_default(trained: Trained, loaded) -> None:
    rows = trained.eval_rows[:50]
    outputs = loaded.signatures[contract.SERVING_TF_EXAMPLE](
        examples=serialized_examples(rows))
    # Small integers and float32 values parse to the same float32 features either way.
    np.testing.assert_allclose(outputs[contract.OUTPUT_KEY].numpy(), serve(loaded, rows),
                               rtol=0, atol=prediction_abs())


def test_transform_features_signature_matches_transform(trained: Trained, loaded) -> None:
    rows = trained.eval_rows[:20]
    outputs = loaded.signatures[contract.TRANSFORM_FEATURES](
        examples=serialized_examples(rows))
    expected = set(trained.tf_transform_output.transformed_feature_spec())
    assert set(outputs) == expected - {pp.TRANSFORMED_LABEL_KEY}
    assert outputs[pp.CROSS_KEY].shape == (len(rows),)


def test_model_learns(trained: Trained, loaded) -> None:
    labels = np.array([_label(row) for row in trained.eval_rows])
    rmse = float(np.sqrt(np.mean((serve(loaded, trained.eval_rows) - labels) ** 2)))
    baseline = float(labels.std())  # RMSE of predicting the (eval) mean
    assert rmse < 0.5 * baseline, (rmse, baseline)


def test_missing_and_integer_valued_inputs(loaded) -> None:
    """An empty is_male means its declared missing value; 26.0 and 26.2 are age 26."""
    known = raw_row(features.IS_MALE_UNKNOWN, features.PLURALITY_MULTIPLE_UNKNOWN, 26, 38)
    empty = raw_row("", features.PLURALITY_MULTIPLE_UNKNOWN, 26, 38)
    predictions = serve(loaded, [known, empty])
    # Equal transformed rows; a blocked matrix kernel may still sum two rows of one batch in
    # different orders.
    assert predictions[0] == pytest.approx(predictions[1], rel=0, abs=prediction_abs())
    request = raw_request([known])
    request[features.MOTHER_AGE.name] = tf.constant([26.2])
    outputs = loaded.signatures[contract.SERVING_DEFAULT](**request)
    assert outputs[contract.OUTPUT_KEY].numpy()[0] == pytest.approx(
        predictions[0], rel=0, abs=prediction_abs())  # a batch of one against one of two


def test_signatures_have_the_documented_specs(loaded) -> None:
    assert {contract.SERVING_DEFAULT, contract.SERVING_TF_EXAMPLE,
            contract.TRANSFORM_FEATURES} <= set(loaded.signatures)
    _, raw_inputs = loaded.signatures[contract.SERVING_DEFAULT].structured_input_signature
    assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in raw_inputs.items()} == {
        name: (spec.dtype, [None]) for name, spec in export.raw_serving_specs().items()}
    for name in (contract.SERVING_TF_EXAMPLE, contract.TRANSFORM_FEATURES):
        _, inputs = loaded.signatures[name].structured_input_signature
        assert {k: (s.dtype, s.shape.as_list()) for k, s in inputs.items()} == {
            "examples": (tf.string, [None])}
    outputs = loaded.signatures[contract.SERVING_DEFAULT].structured_outputs
    assert list(outputs) == [contract.OUTPUT_KEY]
    assert outputs[contract.OUTPUT_KEY].shape.as_list() == [None]


def test_the_export_s_fingerprint_is_of_its_rewritten_saved_model(trained: Trained) -> None:
    """modules/signatures.py rewrites saved_model.pb after the save wrote fingerprint.pb; the
    fingerprint must hash the file that is there, as TensorFlow computes it from it now."""
    from tensorflow.core.protobuf import fingerprint_pb2, saved_model_pb2
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    from modules import signatures

    proto = saved_model_pb2.SavedModel.FromString(
        (pathlib.Path(trained.serving_dir) / "saved_model.pb").read_bytes())
    (graph,) = proto.meta_graphs
    assert graph.signature_def[signatures.REGRESSION].method_name == signatures.REGRESS_METHOD
    now = fingerprint_pb2.FingerprintDef.FromString(
        fingerprinting.CreateFingerprintDef(trained.serving_dir))
    recorded = tf.saved_model.experimental.read_fingerprint(trained.serving_dir)
    assert (recorded.saved_model_checksum, recorded.signature_def_hash) == (
        now.saved_model_checksum, now.signature_def_hash)


def test_warm_start_loads_matching_weights_only(trained: Trained, exported_keras) -> None:
    warm = network.build_keras_model(HPARAMS)
    assert warm_starting.warm_start(warm, trained.serving_dir)
    for ours, theirs in zip(warm.get_weights(), exported_keras.get_weights()):
        np.testing.assert_array_equal(ours, theirs)

    other = network.build_keras_model(dataclasses.replace(HPARAMS, hidden_units="8"))
    before = [w.copy() for w in other.get_weights()]
    assert not warm_starting.warm_start(other, trained.serving_dir)
    for ours, theirs in zip(other.get_weights(), before):
        np.testing.assert_array_equal(ours, theirs)
    assert not warm_starting.warm_start(other, str(pathlib.Path(trained.serving_dir) / "nope"))


def test_warm_start_needs_the_same_features_meaning(trained: Trained,
                                                   tmp_path: pathlib.Path) -> None:
    """Same shapes are not enough: a vocabulary in another order would scramble the weights."""
    import json
    import shutil

    meaning_file = pathlib.Path(trained.serving_dir) / contract.FEATURE_MEANING_FILE
    assert json.loads(meaning_file.read_text()) == features.meaning()
    changed = tmp_path / "other_vocabulary"
    shutil.copytree(trained.serving_dir, changed)
    meaning = features.meaning()
    meaning["categorical"][features.IS_MALE.name]["vocabulary"].reverse()
    (changed / contract.FEATURE_MEANING_FILE).write_text(json.dumps(meaning))
    model = network.build_keras_model(HPARAMS)
    assert not warm_starting.warm_start(model, str(changed))
    (changed / contract.FEATURE_MEANING_FILE).unlink()  # exported before it was recorded
    assert not warm_starting.warm_start(model, str(changed))


def exported_weights(saved_model_dir: str) -> Dict[str, np.ndarray]:
    """An export's Keras weights by checkpoint key (not the optimizer's slots or counters, nor
    the metrics' totals): read from its checkpoint, without loading the model."""
    reader = tf.train.load_checkpoint(str(pathlib.Path(saved_model_dir) / "variables" /
                                          "variables"))
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if key.startswith("layer_with_weights-") and key.count("/") == 3
            and key.endswith("/.ATTRIBUTES/VARIABLE_VALUE")}


def test_run_fn_warm_starts_from_custom_config(trained: Trained, tmp_path: pathlib.Path) -> None:
    """A warm run starts from the exported model's weights: after one Adam step of learning
    rate lr every weight is within lr of the exported one, where a cold start's fresh weights
    are not. Adam's first step moves a weight by lr * m / (sqrt(v) + epsilon) with m and v
    the bias-corrected gradient and its square, at most lr; then the float32 operations of
    the step (about a dozen, each rounding once) and of the subtraction."""
    few = dataclasses.replace(HPARAMS, epochs=1, train_steps_per_epoch=1, learning_rate=1e-6)
    args = make_fn_args(trained.work, few,
                        **{contract.WARM_START_CONFIG_KEY: trained.serving_dir})
    args.serving_model_dir, args.model_run_dir = str(tmp_path / "warm"), str(tmp_path / "run")
    babyweight_model.run_fn(args)
    exported, warm = (exported_weights(d) for d in (trained.serving_dir, args.serving_model_dir))
    assert set(warm) == set(exported)
    assert len(exported) == len(network.build_keras_model(few).weights)
    for key, value in exported.items():
        np.testing.assert_allclose(warm[key], value, rtol=gamma(1, EPS32),
                                   atol=few.learning_rate * (1 + gamma(16, EPS32)), err_msg=key)
    assert any(not np.array_equal(warm[key], exported[key]) for key in exported)  # it trained


def test_tuner_fn_searches(trained: Trained, tmp_path: pathlib.Path) -> None:
    args = make_fn_args(trained.work, HPARAMS, **{contract.MAX_TRIALS_CONFIG_KEY: 2})
    args.working_dir = str(tmp_path)
    args.train_steps, args.eval_steps = 5, 2
    result = babyweight_model.tuner_fn(args)
    result.tuner.search(**result.fit_kwargs)
    statuses = [trial.status for trial in result.tuner.oracle.trials.values()]
    assert statuses == ["COMPLETED"] * 2, [t.message for t in result.tuner.oracle.trials.values()]
    best = result.tuner.get_best_hyperparameters()[0]
    args.hyperparameters = best.get_config()
    tuned = training.hyperparameters_from_fn_args(args)
    assert tuned.hidden_units == best.get("hidden_units")
    assert tuned.epochs == HPARAMS.epochs  # not tuned: from custom_config


def test_raw_examples_are_read_as_tfx_s_data_accessor_reads_them(trained: Trained) -> None:
    """The Trainer's own reader gives the same rows, in the same order, as TFXIO's dataset."""
    output = trained.tf_transform_output
    ours = list(model_input.read_raw_examples(trained.fn_args.train_files,
                                                   output.raw_feature_spec()))
    theirs = list(trained.fn_args.data_accessor.tf_dataset_factory(
        trained.fn_args.train_files,
        tfxio.TensorFlowDatasetOptions(batch_size=model_input.READ_BATCH_SIZE,
                                       num_epochs=1, shuffle=False),
        output.raw_metadata.schema))
    assert set(ours[0]) == set(theirs[0]) >= {*features.FEATURE_NAMES, features.LABEL_KEY}
    for key in ours[0]:
        np.testing.assert_array_equal(np.concatenate([batch[key].numpy() for batch in ours]),
                                      np.concatenate([batch[key].numpy() for batch in theirs]))
    with pytest.raises(FileNotFoundError):
        model_input.read_raw_examples([str(pathlib.Path(trained.serving_dir) / "*.gz")],
                                           output.raw_feature_spec())


def test_input_fn_caps_training_examples(trained: Trained) -> None:
    dataset = model_input.input_fn(
        trained.fn_args.train_files, trained.tf_transform_output,
        batch_size=64, repeat=False, max_examples=100)
    batches = list(dataset)
    assert sum(int(labels.shape[0]) for _, labels in batches) == 100
    assert batches[0][1].shape[1:] == (1,)  # labels are [batch, 1], as the model's output


def test_cached_input_is_every_example_once_per_epoch_reshuffled(trained: Trained) -> None:
    """The cache keeps all transformed examples; each epoch sees each once, in a new order."""
    dataset = model_input.input_fn(
        trained.fn_args.train_files, trained.tf_transform_output,
        batch_size=64, repeat=False, cache=True, seed=7)
    epochs = [np.concatenate([labels.numpy().reshape(-1) for _, labels in dataset])
              for _ in range(2)]
    expected = sorted(_label(row) for row in train_rows())
    for labels in epochs:
        # float32 labels, passed through Transform untouched: exactly the rows' float32 values.
        np.testing.assert_array_equal(sorted(labels), expected)
    assert not np.array_equal(epochs[0], epochs[1])
    # The features are the Transform graph's output, as serving computes them.
    features_batch, _ = next(iter(dataset))
    assert set(features_batch) == (set(trained.tf_transform_output.transformed_feature_spec())
                                   - {pp.TRANSFORMED_LABEL_KEY})


def test_hyperparameters_round_trip_through_flags_and_custom_config() -> None:
    import argparse
    import json

    from pipelines.config import add_flags, from_flags

    parser = argparse.ArgumentParser()
    add_flags(parser, HyperParameters)
    parsed = from_flags(HyperParameters, parser.parse_args(
        ["--hidden-units", "32,16", "--learning-rate", "0.01", "--num-train-examples", "1000"]))
    assert parsed == dataclasses.replace(HyperParameters(), hidden_units="32,16",
                                         learning_rate=0.01, num_train_examples=1000)
    assert HyperParameters.from_dict(json.loads(json.dumps(parsed.to_dict()))) == parsed
    with pytest.raises(ValueError, match="unknown"):
        HyperParameters.from_dict({"hidden_unit": "8"})
    with pytest.raises(ValueError, match="hidden_units"):
        HyperParameters(hidden_units="64,x")


def test_fresh_model_starts_at_the_label_mean(tmp_path):
    labels = np.linspace(5.0, 9.0, 12)
    path = tmp_path / "train.gz"
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for label in labels:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                features.LABEL_KEY: tf.train.Feature(float_list=tf.train.FloatList(
                    value=[label])),
                "mother_age": tf.train.Feature(int64_list=tf.train.Int64List(value=[30])),
            })).SerializeToString())
    spec = {features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.float32),
            "mother_age": tf.io.FixedLenFeature([1], tf.int64)}
    mean = model_input.training_label_mean([str(path)], spec)
    # The records hold the labels as float32; both means then sum the same float64 values.
    stored = labels.astype(np.float32).astype(np.float64)
    assert mean == pytest.approx(float(np.mean(stored)), rel=mean_rel(len(stored), EPS64))
    # Only the first max_examples count, in file order.
    assert model_input.training_label_mean([str(path)], spec, max_examples=3) == (
        pytest.approx(float(np.mean(stored[:3])), rel=mean_rel(3, EPS64)))

    keras_model = network.build_keras_model(HyperParameters(hidden_units="8"))
    network.start_at_label_mean(keras_model, mean)
    bias = keras_model.get_layer(network.WIDE_OUTPUT_LAYER).bias.numpy()
    # The bias is the pre-activation at which the bounded output layer gives the mean.
    output = keras_model.get_layer(contract.OUTPUT_KEY)
    # The float32 bias rounds by half an ulp, moving the output by at most that much (the output's
    # slope is below 1 lb per unit here), and the float32 output rounds once more.
    assert float(output(tf.constant([bias]))[0][0]) == pytest.approx(
        mean, rel=gamma(1, EPS32), abs=float(abs(bias[0])) * EPS32)


def test_same_data_and_seed_train_the_same_model(trained: Trained, trained_models: TrainedModels,
                                                 loaded, tmp_path: pathlib.Path) -> None:
    """run_fn on the same Transform output: the same seed gives the same model (every exported
    weight, bit for bit), so the same eval RMSE and the same predictions, bit for bit; another
    seed gives another model (other weights). The shared versions 1 and 2
    (tests/model_fixtures.py) differ only in their seed, the default one and another; version 1
    is trained again here as it was there (in this process or another worker). At the default
    batch and layer sizes, where TensorFlow's CPU kernels split their work across threads."""
    assert SEEDS[1] is None and SEEDS[2] is not None
    again = trained_models.fn_args(1)
    again.serving_model_dir, again.model_run_dir = str(tmp_path / "again"), str(tmp_path / "run")
    babyweight_model.run_fn(again)
    weights = {name: exported_weights(path) for name, path in (
        ("first", trained.serving_dir), ("again", again.serving_model_dir),
        ("other", str(trained_models.exports[2])))}
    assert set(weights["first"]) == set(weights["again"]) == set(weights["other"])
    for key, value in weights["first"].items():
        np.testing.assert_array_equal(weights["again"][key], value, err_msg=key)
    assert any(not np.array_equal(weights["other"][key], value)
               for key, value in weights["first"].items()), "the seed is unused"
    labels = np.array([_label(row) for row in trained.eval_rows], np.float64)
    predictions = {name: serve(model, trained.eval_rows).astype(np.float64) for name, model in (
        ("first", loaded), ("again", tf.saved_model.load(again.serving_model_dir)))}
    rmse = {name: float(np.sqrt(np.mean((p - labels) ** 2))) for name, p in predictions.items()}
    assert abs(rmse["first"] - rmse["again"]) <= 1e-6, rmse
    np.testing.assert_array_equal(predictions["first"], predictions["again"])
