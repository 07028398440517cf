"""The speed benchmark's floor (the bare script) still runs against the current model code.

The benchmark is run by hand, so nothing else notices when a change in modules/ breaks it.
"""
import math

import pytest

from benchmarks import pipeline_speed
from pipelines.speedups import autograph


@pytest.mark.slow  # trains the model: about as long as a small pipeline's Trainer
def test_the_bare_script_trains_and_scores_the_model(small_warehouse):
    seconds = pipeline_speed.bare_floor(small_warehouse)
    assert {"query", "preprocess", "fit", "evaluate", "total"} <= set(seconds)
    assert math.isfinite(seconds["rmse"]) and 0 < seconds["rmse"] < 2.0, seconds
    # The AutoGraph rule it trains under is the local run's, and off again after.
    assert autograph.present() == ()
