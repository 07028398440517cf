"""The local runner's process-level settings around a pipeline run (pipelines.speedups.enabled).

`gc.get_freeze_count()` also drops when a frozen object is freed by reference counting (this
very test's frames, say), so "still frozen" is checked as a count above zero: a thaw makes it 0.
"""
import gc
import weakref

import pytest

from common import gc_freeze
from pipelines import speedups


@pytest.fixture()
def thawed():
    """Each case starts with nothing frozen and leaves nothing frozen."""
    gc.unfreeze()
    yield
    assert gc_freeze.depth() == 0
    gc.unfreeze()


def test_objects_from_before_the_run_are_frozen_only_while_it_runs(thawed):
    survivor = [object() for _ in range(10)]
    with speedups.enabled():
        assert gc.get_freeze_count() >= len(survivor)
    assert gc.get_freeze_count() == 0
    assert survivor


def test_nested_scopes_thaw_only_on_the_way_out_of_the_outermost(thawed):
    with gc_freeze.frozen():
        outer = gc.get_freeze_count()
        assert outer > 0
        with speedups.enabled():
            assert gc_freeze.depth() == 2
        assert gc.get_freeze_count() > 0, "the inner scope thawed the outer one's freeze"
    assert gc.get_freeze_count() == 0


def test_a_freeze_made_before_the_run_survives_it(thawed):
    gc.freeze()  # e.g. a server that froze its loaded model before a run in the same process
    with speedups.enabled():
        pass
    assert gc.get_freeze_count() > 0


def test_the_server_s_refreeze_inside_a_run_neither_thaws_it_nor_is_thawed_by_it(thawed):
    with speedups.enabled():
        gc_freeze.refreeze()  # what the server's version manager does before its first version
        assert gc_freeze.depth() == 1 and gc.get_freeze_count() > 0
    assert gc.get_freeze_count() > 0, "the run thawed the server's freeze"


class _Node:
    pass


def test_the_server_s_refreeze_on_its_own_collects_what_was_frozen_and_freezes(thawed):
    """Outside a run, refreezing collects the frozen garbage first."""
    node = _Node()
    node.cycle = node  # garbage only the cyclic collector can free
    gone = weakref.ref(node)
    gc.freeze()
    del node
    gc_freeze.refreeze()
    assert gone() is None
    assert gc.get_freeze_count() > 0
