"""The local runner's process-level settings around a pipeline run."""
import gc

import local_runner


def test_objects_from_before_the_run_are_frozen_only_while_it_runs():
    before = gc.get_freeze_count()
    survivor = [object() for _ in range(10)]
    with local_runner.imports_frozen():
        assert gc.get_freeze_count() >= before + len(survivor)
    assert gc.get_freeze_count() == before
    assert survivor

