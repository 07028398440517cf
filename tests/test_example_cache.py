"""The Trainer's example cache turns itself off when it would not fit in memory."""
from __future__ import annotations

import logging
import pathlib
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from modules import contract, example_cache, training

FEATURE_SPEC = {"a_xf": tf.io.FixedLenFeature([], tf.float32),
                "b_xf": tf.io.FixedLenFeature([], tf.int64)}


def write_examples(directory: pathlib.Path, count: int, seed: int) -> str:
    """`count` random tf.Examples in a gzipped TFRecord file, as ExampleGen writes them."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    path = directory / "data_tfrecord-00000-of-00001.gz"
    options = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=1)
    with tf.io.TFRecordWriter(str(path), options=options) as writer:
        for a, b in zip(rng.normal(7, 1, count), rng.integers(15, 50, count)):
            example = tf.train.Example(features=tf.train.Features(feature={
                "weight": tf.train.Feature(float_list=tf.train.FloatList(value=[a])),
                "age": tf.train.Feature(int64_list=tf.train.Int64List(value=[b])),
                "plurality": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[rng.choice([b"Single(1)", b"Twins(2)"])]))}))
            writer.write(example.SerializeToString())
    return str(directory / "*.gz")


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("examples")
    return SimpleNamespace(train=write_examples(root / "train", 20_000, 1),
                           eval=write_examples(root / "eval", 3_000, 2))


def test_record_count_is_estimated_from_the_files_size(splits: SimpleNamespace) -> None:
    # The sample's gzip ratio stands for the whole file's: a size estimate, not a count.
    for pattern, count in ((splits.train, 20_000), (splits.eval, 3_000)):
        assert count * 0.8 <= example_cache.estimated_records([pattern]) <= count * 1.25


def test_cache_is_kept_when_it_fits(splits: SimpleNamespace,
                                    caplog: pytest.LogCaptureFixture) -> None:
    estimate = example_cache.estimated_cache_bytes([[splits.train], [splits.eval]], FEATURE_SPEC)
    assert estimate >= 23_000 * (4 + 8)  # at least the values themselves
    with caplog.at_level(logging.INFO, logger="babyweight.model"):
        assert example_cache.cache_fits([[splits.train], [splits.eval]], FEATURE_SPEC, 0.5,
                                        memory_bytes=2 * estimate)
    assert not caplog.records


def test_cache_turns_itself_off_with_one_log_line(splits: SimpleNamespace,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    estimate = example_cache.estimated_cache_bytes([[splits.train], [splits.eval]], FEATURE_SPEC)
    with caplog.at_level(logging.INFO, logger="babyweight.model"):
        assert not example_cache.cache_fits([[splits.train], [splits.eval]], FEATURE_SPEC, 0.5,
                                            memory_bytes=int(1.9 * estimate))
    (record,) = caplog.records
    assert "Example cache off" in record.getMessage()
    assert "--cache-examples-max-memory-fraction" in record.getMessage()


def test_trainer_follows_the_flag_s_fraction(splits: SimpleNamespace,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """run_fn's decision: a tiny fraction of this machine's memory turns the cache off."""
    output = SimpleNamespace(transformed_feature_spec=lambda: FEATURE_SPEC)

    def fn_args(**custom: object) -> SimpleNamespace:
        return SimpleNamespace(train_files=[splits.train], eval_files=[splits.eval],
                               custom_config=custom)

    tiny = {contract.CACHE_CONFIG_KEY: True,
            contract.CACHE_MAX_MEMORY_FRACTION_CONFIG_KEY: 1e-9}
    with caplog.at_level(logging.INFO, logger="babyweight.model"):
        assert not training.use_cache(fn_args(**tiny), output)
    assert len(caplog.records) == 1
    assert training.use_cache(fn_args(**{contract.CACHE_CONFIG_KEY: True}), output)
    assert not training.use_cache(fn_args(**{contract.CACHE_CONFIG_KEY: False}), output)
    with pytest.raises(ValueError, match="fraction"):
        training.use_cache(fn_args(**{**tiny, contract.CACHE_MAX_MEMORY_FRACTION_CONFIG_KEY: 0}),
                           output)


def test_machine_memory_is_known() -> None:
    assert example_cache.machine_memory_bytes() > 2**28
