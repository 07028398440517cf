"""The Trainer's run_fn end to end on a small synthetic set, and the exported signatures.

Rows follow a known formula (sex, plurality and gestation effects plus small noise), so a few
hundred steps are enough to show the model learns; Transform runs for real (tests'
`analyze_and_transform`), so the skew test compares serving against Transform's own output.
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
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs  # noqa: E402
from tfx.components.util import tfxio_utils  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402
from tfx_bsl.public import tfxio  # noqa: E402

from modules import contract, export, features, model_input, network, training  # noqa: E402
from modules import model as babyweight_model  # noqa: E402
from modules import preprocessing as pp, warm_start as warm_starting  # noqa: E402
from modules.hparams import HyperParameters  # noqa: E402
from pipelines.speedups import autograph  # noqa: E402
from tests.test_preprocessing import Row, analyze_and_transform, raw_row  # noqa: E402
from tests.tolerances import EPS32, EPS64, gamma, mean_rel, prediction_abs  # noqa: E402

TRAIN_ROWS, EVAL_ROWS = 800, 300
HPARAMS = HyperParameters(hidden_units="16,8", embedding_dim=4, batch_size=32,
                          learning_rate=0.02, epochs=3, train_steps_per_epoch=100,
                          early_stopping_patience=2)


def synthetic_rows(count: int, seed: int) -> List[Row]:
    """Rows whose label is a known function of the features plus N(0, 0.3) noise."""
    rng = np.random.default_rng(seed)
    sexes = (features.IS_MALE_TRUE, features.IS_MALE_FALSE, features.IS_MALE_UNKNOWN)
    sex_effect = {features.IS_MALE_TRUE: 0.3, features.IS_MALE_FALSE: -0.3,
                  features.IS_MALE_UNKNOWN: 0.0}
    rows = []
    for _ in range(count):
        sex = sexes[rng.integers(len(sexes))]
        single = rng.random() < 0.8
        plurality = features.PLURALITY_NAMES[0] if single else features.PLURALITY_NAMES[1]
        age = int(rng.integers(16, 45))
        weeks = int(rng.integers(30, 44))
        weight = (7.4 + sex_effect[sex] - (0.0 if single else 1.5)
                  + 0.35 * (min(weeks, 41) - 39) + 0.01 * (age - 30) + rng.normal(0, 0.3))
        rows.append(raw_row(sex, plurality, age, weeks, weight_pounds=weight,
                            hashmonth=int(rng.integers(1, 10**6))))
    return rows


@dataclasses.dataclass
class Trained:
    eval_rows: List[Row]
    eval_transformed: List[Row]
    tf_transform_output: tft.TFTransformOutput
    serving_dir: str
    fn_args: FnArgs


def make_fn_args(work: pathlib.Path, hparams: HyperParameters, **custom: object) -> FnArgs:
    """FnArgs as TFX's Trainer builds them, over `analyze_and_transform`'s output layout."""
    examples = standard_artifacts.Examples()  # tf.Example payload, like ExampleGen's output
    accessor = DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=None, data_view_decode_fn=None)
    return FnArgs(
        working_dir=str(work / "working"),
        train_files=[str(work / "raw" / "train" / "*.gz")],
        eval_files=[str(work / "raw" / "eval" / "*.gz")],
        transform_graph_path=str(work / "transform_graph"),
        data_accessor=accessor,
        serving_model_dir=str(work / "serving_model"),
        model_run_dir=str(work / "model_run"),
        custom_config={contract.HYPERPARAMETERS_CONFIG_KEY: hparams.to_dict(), **custom},
    )


@pytest.fixture(scope="module", autouse=True)
def as_the_local_runner_trains() -> Iterator[None]:
    """The local runner's AutoGraph rule (pipelines/speedups/autograph.py), on around the
    pipeline's Trainer too; test_speedups.py shows the results equal the stock path's."""
    with autograph.graph_libraries_unconverted():
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    work = tmp_path_factory.mktemp("trainer")
    eval_rows = synthetic_rows(EVAL_ROWS, seed=2)
    _, eval_transformed, output = analyze_and_transform(
        synthetic_rows(TRAIN_ROWS, seed=1), eval_rows, output_dir=work)
    fn_args = make_fn_args(work, HPARAMS)
    babyweight_model.run_fn(fn_args)
    return Trained(eval_rows, eval_transformed, output, fn_args.serving_model_dir, fn_args)


@pytest.fixture(scope="module")
def loaded(trained: Trained):
    return tf.saved_model.load(trained.serving_dir)


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


def test_serving_matches_transform_output(trained: Trained, loaded) -> None:
    """No training/serving skew: raw requests through the exported graph == Keras on TFT output."""
    keras_model = tf_keras.models.load_model(trained.serving_dir, compile=False)
    batch = {key: tf.constant([row[key] for row in trained.eval_transformed])
             for key in keras_model.input_names}
    from_transform = keras_model(batch, training=False).numpy().reshape(-1)
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


def test_warm_start_loads_matching_weights_only(trained: Trained) -> None:
    warm = network.build_keras_model(HPARAMS)
    assert warm_starting.warm_start(warm, trained.serving_dir)
    exported = tf_keras.models.load_model(trained.serving_dir, compile=False)
    for ours, theirs in zip(warm.get_weights(), exported.get_weights()):
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


def test_run_fn_warm_starts_from_custom_config(trained: Trained, tmp_path: pathlib.Path) -> None:
    """A warm run's first epoch starts from the exported model: lower loss than a cold one."""
    few = dataclasses.replace(HPARAMS, epochs=1, train_steps_per_epoch=1, learning_rate=1e-6)
    losses: Dict[str, float] = {}
    for name, custom in (("cold", {}), ("warm", {
            contract.WARM_START_CONFIG_KEY: trained.serving_dir})):
        args = make_fn_args(pathlib.Path(trained.fn_args.transform_graph_path).parent, few,
                            **custom)
        args.serving_model_dir = str(tmp_path / name)
        args.model_run_dir = str(tmp_path / f"{name}_run")
        babyweight_model.run_fn(args)
        loaded = tf.saved_model.load(args.serving_model_dir)
        labels = np.array([_label(row) for row in trained.eval_rows])
        losses[name] = float(np.mean((serve(loaded, trained.eval_rows) - labels) ** 2))
    assert losses["warm"] < 0.5 * losses["cold"], losses


def test_tuner_fn_searches(trained: Trained, tmp_path: pathlib.Path) -> None:
    args = make_fn_args(pathlib.Path(trained.fn_args.transform_graph_path).parent, HPARAMS,
                        **{contract.MAX_TRIALS_CONFIG_KEY: 2})
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
    expected = sorted(_label(row) for row in synthetic_rows(TRAIN_ROWS, seed=1))
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


def test_same_data_and_seed_train_the_same_model(trained: Trained, tmp_path: pathlib.Path) -> None:
    """run_fn on the same Transform output: the same seed gives the same eval RMSE (and the
    same predictions, bit for bit); another seed gives another model. At the default batch
    and layer sizes, where TensorFlow's CPU kernels split their work across threads."""
    defaults = HyperParameters()
    quick = dataclasses.replace(HPARAMS, epochs=2, train_steps_per_epoch=10,
                                batch_size=defaults.batch_size,
                                hidden_units=defaults.hidden_units,
                                embedding_dim=defaults.embedding_dim)
    labels = np.array([_label(row) for row in trained.eval_rows], np.float64)
    predictions: Dict[str, np.ndarray] = {}
    for name, seed in (("first", 7), ("again", 7), ("other", 8)):
        args = make_fn_args(pathlib.Path(trained.fn_args.transform_graph_path).parent, quick,
                            **{contract.SEED_CONFIG_KEY: seed})
        args.serving_model_dir = str(tmp_path / name)
        args.model_run_dir = str(tmp_path / f"{name}_run")
        babyweight_model.run_fn(args)
        predictions[name] = serve(tf.saved_model.load(args.serving_model_dir),
                                  trained.eval_rows).astype(np.float64)
    rmse = {name: float(np.sqrt(np.mean((p - labels) ** 2))) for name, p in predictions.items()}
    assert abs(rmse["first"] - rmse["again"]) <= 1e-6, rmse
    np.testing.assert_array_equal(predictions["first"], predictions["again"])
    assert not np.array_equal(predictions["first"], predictions["other"]), "the seed is unused"

