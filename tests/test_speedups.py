"""The speed-up seam: on only inside `enabled()`, off (once, logged) on another library release.

The batched reads, the DoFn inspection cache and batch slicing have their own tests of effect
and of equal results (test_batched_reads.py, test_beam_introspection.py, test_tfma_slicing.py);
the heap freeze's are test_local_runner.py's. This file covers the AutoGraph rule, the local
runner's skipped TFX sdist and the version check every patch goes through.
"""
from __future__ import annotations

import logging
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from pipelines import speedups
from pipelines.speedups import autograph, beam_introspection, local_dependencies, version_check


@pytest.fixture()
def fresh_decisions():
    version_check.forget()
    yield
    version_check.forget()


def test_the_autograph_rule_is_present_during_a_run_and_absent_after(fresh_decisions):
    assert autograph.present() == ()
    with speedups.enabled():
        assert autograph.present() == autograph.GRAPH_LIBRARIES
    assert autograph.present() == ()


def test_a_tf_keras_model_traced_with_the_rule_computes_what_it_does_without(fresh_decisions):
    tf_keras.utils.set_random_seed(7)
    model = tf_keras.Sequential([tf_keras.layers.Dense(3, activation="relu"),
                                 tf_keras.layers.Dense(1)])
    inputs = np.linspace(-2.0, 2.0, 40, dtype=np.float32).reshape(10, 4)
    model(inputs)  # builds the weights once, so both traces share them

    def traced() -> np.ndarray:
        return tf.function(lambda x: model(x, training=False))(inputs).numpy()

    stock = traced()
    with autograph.graph_libraries_unconverted():
        assert autograph.present() == autograph.GRAPH_LIBRARIES
        ours = traced()
    np.testing.assert_array_equal(ours, stock)  # the same ops in the same order: exact


def test_another_release_turns_a_speed_up_off_and_says_so_once(fresh_decisions, monkeypatch,
                                                               caplog):
    distribution, _, _ = version_check.RANGES["autograph_rules"]
    monkeypatch.setitem(version_check.RANGES, "autograph_rules", (distribution, (0, 1), (0, 2)))
    with caplog.at_level(logging.WARNING, logger="babyweight.speedups"):
        for _ in range(3):
            with speedups.enabled():
                assert autograph.present() == ()
    warnings = [r.getMessage() for r in caplog.records if "autograph_rules" in r.getMessage()]
    assert len(warnings) == 1 and distribution in warnings[0] and "is off" in warnings[0]


def test_the_beam_inspection_cache_is_stock_beam_on_another_release(fresh_decisions,
                                                                    monkeypatch):
    from apache_beam.transforms import core

    stock = core.get_function_args_defaults
    with beam_introspection.cached_dofn_inspection():
        assert core.get_function_args_defaults is not stock
    monkeypatch.setitem(version_check.RANGES, "beam_introspection",
                        ("apache-beam", (1, 0), (1, 1)))
    version_check.forget()  # decided once per process; decide again for the other release
    with beam_introspection.cached_dofn_inspection():
        assert core.get_function_args_defaults is stock
    assert core.get_function_args_defaults is stock


MULTI_PROCESSING = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def test_a_local_run_builds_no_tfx_sdist_and_a_remote_one_still_does(fresh_decisions, tmp_path):
    """TFX's Beam executors get the local run's Beam arguments back unchanged (no sdist to
    build for the DirectRunner's own workers) while the run lasts; a remote runner still gets
    TFX's --extra_package, and after the run TFX's own function is back."""
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.utils import dependency_utils

    from pipelines.speedups import batched_reads

    stock = dependency_utils.make_beam_dependency_flags
    assert not local_dependencies.in_place()
    with speedups.enabled():
        assert local_dependencies.in_place()
        executor = batched_reads.StatisticsGenExecutor(BaseBeamExecutor.Context(
            beam_pipeline_args=list(MULTI_PROCESSING), tmp_dir=str(tmp_path)))
        args = executor._beam_pipeline_args  # pylint: disable=protected-access
        assert args[:2] == MULTI_PROCESSING
        assert not any("extra_package" in a for a in args)
        remote = dependency_utils.make_beam_dependency_flags(
            ["--runner=DataflowRunner", "--project=p"])
        assert any(a.startswith("--extra_package=") and a.endswith(".tar.gz") for a in remote)
    assert dependency_utils.make_beam_dependency_flags is stock


def test_the_local_run_s_sdist_skip_is_tfx_s_own_code_on_another_release(fresh_decisions,
                                                                         monkeypatch):
    from tfx.utils import dependency_utils

    stock = dependency_utils.make_beam_dependency_flags
    monkeypatch.setitem(version_check.RANGES, "local_dependencies", ("tfx", (0, 1), (0, 2)))
    version_check.forget()
    with local_dependencies.skipped_for_local_runner():
        assert dependency_utils.make_beam_dependency_flags is stock


@pytest.mark.parametrize("args, local", [
    ([], True), (MULTI_PROCESSING, True), (["--runner=DirectRunner"], True),
    (["--runner=direct"], True),
    (["--runner=apache_beam.runners.direct.direct_runner.DirectRunner"], True),
    (["--runner=DataflowRunner"], False), (["--runner=FlinkRunner"], False)])
def test_only_the_direct_runner_counts_as_local(args, local):
    assert local_dependencies.runs_locally(args) is local


@pytest.mark.parametrize("name", sorted(version_check.RANGES))
def test_every_speed_up_is_in_range_with_the_locked_libraries(name, fresh_decisions):
    """requirements.lock's versions are the ones the speed-ups were written for."""
    assert version_check.in_effect(name)


def test_a_replaced_attribute_is_put_back_when_the_block_raises() -> None:
    from pipelines.speedups.replaced import replaced

    owner = types.SimpleNamespace(value=1)
    with pytest.raises(RuntimeError):
        with replaced(owner, "value", lambda stock: stock + 1):
            assert owner.value == 2
            raise RuntimeError("inside")
    assert owner.value == 1
