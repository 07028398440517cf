"""Training's progress lines reach the runner's log, and TensorBoard gets each run's hparams."""
from __future__ import annotations

import logging
import pathlib

import numpy as np
import pytest


def test_epoch_progress_lines_pass_the_runners_filter(caplog):
    import tf_keras

    from modules import training_log
    from common import logs
    from pipelines.speedups import autograph

    model = tf_keras.Sequential([tf_keras.layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((32, 2), dtype=np.float32)
    # Trained as the local runner trains (its AutoGraph rule on): the first fit in a process
    # otherwise converts all of tf_keras' training loop.
    with autograph.graph_libraries_unconverted(), \
            caplog.at_level(logging.INFO, logger="babyweight.model"):
        model.fit(x, x[:, :1], batch_size=8, epochs=2, verbose=0,
                  callbacks=[training_log.EpochProgress(2)])
    lines = [r for r in caplog.records if r.name == "babyweight.model"]
    assert [r.getMessage().split(":")[0] for r in lines] == ["Trainer epoch 1/2",
                                                             "Trainer epoch 2/2"]
    assert "4 steps" in lines[0].getMessage() and "loss" in lines[0].getMessage()
    assert all(logs._ProgressFilter().filter(r) for r in lines)
    # The model's own logger is one of them (it was filtered out as `modules.model`).
    from modules import training, warm_start

    assert training.LOGGER.name.startswith("babyweight.")
    assert warm_start.LOGGER.name.startswith("babyweight.")


def test_hparams_are_written_under_the_runs_name(tmp_path: pathlib.Path):
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2

    from modules import training_log
    from modules.hparams import HyperParameters

    values = HyperParameters().to_dict()
    training_log.write_hparams(str(tmp_path), values, "20261201-101010")
    found = []
    assert not list(tmp_path.glob("events.out.tfevents.*")), "an extra TensorBoard run"
    for event_file in (tmp_path / training_log.TRAIN_RUN).glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content)
                    if data.HasField("session_start_info"):
                        found.append(data.session_start_info)
    assert len(found) == 1
    assert found[0].group_name == "20261201-101010"
    shown = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
             for k, v in found[0].hparams.items()}
    assert set(shown) == set(values)
    assert shown["epochs"] == pytest.approx(values["epochs"])
