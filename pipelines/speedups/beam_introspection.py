"""Beam's inspection of DoFn signatures, memoized for the length of a local run.

Why: Beam 2.61 asks `inspect.signature` about every method of a DoFn (about 30 of them) each
time it builds, translates, validates or executes a ParDo. A local run of this pipeline does
that thousands of times over the same few hundred functions (what it cost: the README's
"Pipeline speed"), and the answer only depends on the function. TFX has no setting for it and Beam none
either, so inside `cached_dofn_inspection()` the local runner memoizes Beam's own
`get_function_args_defaults`, and restores it on the way out. Remote workers (Dataflow, Vertex)
run Beam unchanged.
"""
from __future__ import annotations

import types
import weakref
from typing import Any, Callable, ContextManager, Dict, List, Tuple

from apache_beam.transforms import core

from pipelines.speedups.replaced import replaced

ArgsDefaults = Tuple[List[str], List[Any]]


def memoized(inspect: Callable[[Any], ArgsDefaults]) -> Callable[[Any], ArgsDefaults]:
    """`inspect` (Beam's get_function_args_defaults), computed once per Python function.

    Only plain functions and methods bound to one are memoized (a bound method's arguments
    leave out `self`, so bound and unbound answers are kept apart); an answer is thrown away
    when the function's defaults are replaced, since they are part of it. Anything else
    (builtins, partials, callable objects) goes to `inspect` every time. Entries die with their
    function.
    """
    # function -> {bound: (its __defaults__, its __kwdefaults__, the answer)}
    answers: "weakref.WeakKeyDictionary[Any, Dict[bool, Tuple[Any, Any, ArgsDefaults]]]" = (
        weakref.WeakKeyDictionary())

    def get_function_args_defaults(f: Any) -> ArgsDefaults:
        bound = isinstance(f, types.MethodType)
        function = f.__func__ if bound else f
        if type(function) is not types.FunctionType:  # noqa: E721 - exactly a def or lambda
            return inspect(f)
        per_function = answers.setdefault(function, {})
        known = per_function.get(bound)
        if (known is None or known[0] is not function.__defaults__
                or known[1] is not function.__kwdefaults__):
            known = per_function[bound] = (function.__defaults__, function.__kwdefaults__,
                                           inspect(f))
        args, defaults = known[2]
        return list(args), list(defaults)  # callers own their lists, as with Beam's

    return get_function_args_defaults


def cached_dofn_inspection() -> ContextManager[None]:
    """Within the block, Beam inspects each DoFn method's signature once."""
    return replaced(core, "get_function_args_defaults", memoized, "beam_introspection")
