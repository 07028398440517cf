"""Monitoring runs side by side: two runs caching the eval predictions at once."""
from __future__ import annotations

import os
import pathlib

import numpy as np

from monitoring import predictions
from tests.test_monitoring import eval_traffic  # noqa: F401 - a fixture

pytest_plugins = ("tests.serving_fixtures",)


def test_two_runs_caching_the_eval_predictions_at_once_each_write_a_whole_file(
        eval_traffic, tmp_path, monkeypatch):
    import threading

    found, _, _ = eval_traffic
    real = predictions.compute
    monkeypatch.setattr(predictions, "compute", lambda lin: real(lin, max_examples=500))
    both_written = threading.Barrier(2, timeout=120)
    renamed = os.replace

    def replace(source, target):  # both have written their file before either renames it
        both_written.wait()
        return renamed(source, target)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(pathlib.Path, "replace", lambda self, target: replace(self, target))
    results, errors = [], []

    def run():
        try:
            results.append(predictions.cached(found, tmp_path / "cache"))
        except Exception as error:  # noqa: BLE001 - the test's finding
            errors.append(repr(error))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 2
    (cache,) = (tmp_path / "cache").iterdir()  # no temporary file left beside it
    assert np.array_equal(np.load(cache), results[0])

