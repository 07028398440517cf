"""The local run's speed-ups: every one that reaches into a library, behind this one seam.

Two kinds, both off unless asked for, and none applied by importing anything:

  process-wide, for the length of `enabled()` (the local runner enters it around the run; any
  other process may opt in the same way):
    common.gc_freeze            the imported stack frozen for the garbage collector
    beam_introspection          Beam's DoFn signature inspection memoized
    autograph                   AutoGraph leaves tf_keras and tf.Transform unconverted
    local_dependencies          no sdist of TFX built for the DirectRunner's own workers
    forked_workers              multi_processing workers forked with the libraries imported

  per component, chosen when the wiring builds it (pipelines/pipeline.py, `Engines`):
    batched_reads               StatisticsGen, Transform, Evaluator read TFRecords in batches
    tfma_slicing                the Evaluator slices whole batches (its module_path)

Each patch of a library's private code names the version range it was written for
(version_check.RANGES), checks it when it starts, and outside it runs the stock code and logs
that once. A patch that swaps a library's attribute does it through `replaced.replaced`, which
puts the stock one back on the way out. What each saved, measured: benchmarks/results/pipeline_speed.md and the README's
"Pipeline speed" section. Each has a test that it is in effect where it should be and that its
results equal the stock path's (tests/test_speedups.py, test_batched_reads.py,
test_beam_introspection.py, test_tfma_slicing.py, test_local_runner.py).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

from common import gc_freeze


@contextlib.contextmanager
def enabled(beam_pipeline_args: Sequence[str] = ()) -> Iterator[None]:
    """The process-wide speed-ups, on while inside and off again after; `beam_pipeline_args`
    (the run's) say whether Beam will start worker processes, which are then forked."""
    from pipelines.speedups import (autograph, beam_introspection, forked_workers,
                                    local_dependencies)

    # The workers' zygote is forked first, with the heap frozen and before anything else runs.
    with gc_freeze.frozen(), forked_workers.forked(beam_pipeline_args), \
            beam_introspection.cached_dofn_inspection(), \
            autograph.graph_libraries_unconverted(), \
            local_dependencies.skipped_for_local_runner():
        yield
