"""The model's input: ExampleGen's raw tf.Examples, read in big batches, through Transform's graph."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import tensorflow as tf
import tensorflow_transform as tft

from modules import features
from modules import preprocessing as pp
from modules import records

# Rows in the shuffle buffer, and rows per read of the files (parsing is cheaper in big batches).
SHUFFLE_BUFFER = 10_000
READ_BATCH_SIZE = 4096
MAX_PARALLEL_READS = 8
# Training examples whose labels' mean starts a fresh model's output bias.
LABEL_MEAN_EXAMPLES = 25_600


def read_raw_examples(file_patterns: List[str], raw_feature_spec: Mapping[str, Any]
                      ) -> tf.data.Dataset:
    """ExampleGen's tf.Examples, parsed READ_BATCH_SIZE at a time, its files interleaved.

    tf.data's own TFRecord reader and `parse_example`, not the DataAccessor's TFXIO dataset,
    which took several times as long on the same files, paid in every run's first epoch
    (the README's "Pipeline speed").
    """
    files, compression = records.tfrecord_files(file_patterns)
    # As many parallel reads as files (up to MAX_PARALLEL_READS), not AUTOTUNE's one per core:
    # the interleaved order, and so the trained model, is then the same on every machine.
    dataset = tf.data.TFRecordDataset(
        files, compression_type=compression,
        num_parallel_reads=min(len(files), MAX_PARALLEL_READS) if len(files) > 1 else None)
    return dataset.batch(READ_BATCH_SIZE).map(
        lambda batch: tf.io.parse_example(batch, raw_feature_spec),
        num_parallel_calls=tf.data.AUTOTUNE)


def input_fn(
    file_pattern: List[str],
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    *,
    repeat: bool = True,
    shuffle: bool = True,
    max_examples: int = 0,
    cache: bool = False,
    seed: Optional[int] = None,
) -> tf.data.Dataset:
    """(transformed features, label [batch, 1]) batches from ExampleGen's raw tf.Examples.

    The Transform graph is applied here, as the data is read: it is the graph the serving
    signatures apply too, and the pipeline never writes a transformed copy of the data.
    `max_examples` > 0 reads only the first that many examples, so the training set size is a
    knob independent of how big the split is. `cache` keeps the transformed examples in memory
    after the first pass: reading, parsing and transforming the files every epoch cost more
    than training on them.
    """
    transform_layer = tf_transform_output.transform_features_layer()

    def transformed(raw: Dict[str, tf.Tensor]) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
        features_out = dict(transform_layer(raw))
        return features_out, features_out.pop(pp.TRANSFORMED_LABEL_KEY)

    dataset = read_raw_examples(file_pattern, tf_transform_output.raw_feature_spec())
    dataset = dataset.map(transformed, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    if max_examples > 0:
        dataset = dataset.take(max_examples)
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    # An explicit [batch, 1] label: MSE of [batch] against [batch, 1] would broadcast to a matrix.
    return dataset.batch(batch_size).map(
        lambda x, y: (x, tf.reshape(y, [-1, 1])),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)



def training_label_mean(file_patterns: List[str], raw_feature_spec: Mapping[str, Any],
                        max_examples: int = LABEL_MEAN_EXAMPLES) -> float:
    """The mean label of the first `max_examples` raw training examples, in file order.

    Read raw: Transform passes the label through unchanged, so parsing the label column alone
    gives the same values without running the Transform graph (ExampleGen's files are already
    in a shuffled order).
    """
    label_spec = {features.LABEL_KEY: raw_feature_spec[features.LABEL_KEY]}
    total, count = 0.0, 0
    for batch in read_raw_examples(file_patterns, label_spec):
        labels = tf.reshape(tf.cast(batch[features.LABEL_KEY], tf.float64), [-1])
        labels = labels[:max_examples - count]
        total += float(tf.reduce_sum(labels))
        count += int(tf.size(labels))
        if count >= max_examples:
            break
    return total / max(count, 1)
