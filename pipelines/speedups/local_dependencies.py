"""TFX's Beam components build no sdist of TFX for workers that already run this environment.

Given any Beam argument, TFX's BaseBeamExecutor calls `dependency_utils.make_beam_dependency_flags`,
which builds a source package of TFX itself (`setup.py sdist` of the whole TFX tree, seconds per
component) and adds it as --extra_package, so that remote workers (Dataflow, Flink) can import
the executors. Beam's DirectRunner never installs it: its multi_processing workers are
subprocesses of this same interpreter. So for a local run with Beam arguments (multi_processing)
every Beam component paid that build for nothing. While inside `skipped_for_local_runner()`,
the function returns the arguments unchanged when they name no runner or the DirectRunner,
and runs TFX's own code for any other runner.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, List, Sequence

from pipelines.speedups import version_check
from pipelines.speedups.replaced import replaced

# Beam's runner names for this machine's DirectRunner, lower-cased without "Runner" (Beam
# accepts "DirectRunner", "direct" and the module path alike).
LOCAL_RUNNERS = ("", "direct", "bundlebaseddirect", "switchingdirect")


def _dependency_utils():  # type: ignore[no-untyped-def]
    from tfx.utils import dependency_utils

    return dependency_utils


def runs_locally(beam_pipeline_args: Sequence[str]) -> bool:
    """Whether these Beam arguments run on this machine's DirectRunner (no remote workers)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    runner = PipelineOptions(flags=list(beam_pipeline_args)).view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) else type(runner).__name__ if runner else ""
    short = name.rsplit(".", 1)[-1].lower()
    return (short[:-len("runner")] if short.endswith("runner") else short) in LOCAL_RUNNERS


def in_place() -> bool:
    """Whether TFX's dependency flags are currently ours (the local-runner skip)."""
    return getattr(_dependency_utils().make_beam_dependency_flags, "_local_skip", False)


def skipped_for_local_runner() -> ContextManager[None]:
    """While inside, a local runner's Beam components get no TFX sdist built for them."""
    if not version_check.in_effect("local_dependencies"):
        return contextlib.nullcontext()

    def skipping(stock: Callable[[List[str]], List[str]]) -> Callable[[List[str]], List[str]]:
        def flags(beam_pipeline_args: List[str]) -> List[str]:
            if runs_locally(beam_pipeline_args):
                return list(beam_pipeline_args)
            return stock(beam_pipeline_args)

        flags._local_skip = True  # type: ignore[attr-defined]
        return flags

    return replaced(_dependency_utils(), "make_beam_dependency_flags", skipping)
