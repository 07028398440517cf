"""Memoized DoFn inspection answers as Beam does, asks once per function, and is undone after."""
from __future__ import annotations

import functools
from typing import Any, List

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import core, userstate

from pipelines.speedups.beam_introspection import cached_dofn_inspection, memoized

BUFFER = userstate.BagStateSpec("buffer", beam.coders.VarIntCoder())


class _Stateful(beam.DoFn):
    def process(self, element: Any, buffer=beam.DoFn.StateParam(BUFFER),
                timestamp=beam.DoFn.TimestampParam):
        buffer.add(element[1])
        yield element[0], element[1] * 10


class _Plain(beam.DoFn):
    def process(self, element: int, factor: int = 3):
        yield element * factor


def _scale(element: int, factor: int = 2) -> int:
    return element * factor


def test_answers_equal_beams_for_methods_functions_and_others() -> None:
    original = core.get_function_args_defaults
    calls: List[Any] = []
    counted = memoized(lambda f: calls.append(f) or original(f))
    targets = [_Stateful().process, _Plain().process, _Plain().setup, _scale,
               functools.partial(_scale, factor=5), len]
    for target in targets * 3:
        assert counted(target) == original(target)
    # Once per (function, bound or not); partials and builtins are asked every time.
    memoized_targets = [c for c in calls if not isinstance(c, functools.partial) and c is not len]
    assert len(memoized_targets) == 4
    assert sum(1 for c in calls if c is len) == 3


def test_answer_follows_replaced_defaults() -> None:
    def scale(element: int, factor: int = 2) -> int:
        return element * factor

    cached = memoized(core.get_function_args_defaults)
    assert cached(scale) == (["element", "factor"], [2])
    scale.__defaults__ = (7,)
    assert cached(scale) == (["element", "factor"], [7])


def test_callers_cannot_change_the_cached_answer() -> None:
    cached = memoized(core.get_function_args_defaults)
    args, defaults = cached(_scale)
    args.append("extra")
    defaults.clear()
    assert cached(_scale) == (["element", "factor"], [2])


def test_pipeline_with_state_and_side_params_runs_inside_and_beam_is_restored() -> None:
    original = core.get_function_args_defaults
    with cached_dofn_inspection():
        assert core.get_function_args_defaults is not original
        assert userstate.is_stateful_dofn(_Stateful())
        assert not userstate.is_stateful_dofn(_Plain())
        with beam.Pipeline() as pipeline:
            keyed = pipeline | beam.Create([("a", 1), ("b", 2), ("a", 3)])
            stateful = keyed | "Stateful" >> beam.ParDo(_Stateful())
            plain = (pipeline | "Numbers" >> beam.Create([1, 2])
                     | "Plain" >> beam.ParDo(_Plain()) | "Map" >> beam.Map(_scale, factor=5))
            assert_that(stateful, equal_to([("a", 10), ("b", 20), ("a", 30)]),
                        label="CheckStateful")
            assert_that(plain, equal_to([15, 30]), label="CheckPlain")
    assert core.get_function_args_defaults is original
