"""AutoGraph leaves tf_keras' and tf.Transform's own code unconverted, while a run lasts.

TF 2.16's AutoGraph exempts modules named `keras*` and `tensorflow.*` but not `tf_keras*` or
`tensorflow_transform*`, so every first trace (fit, evaluate, predict, save, and each tf.data
map or signature that applies the Transform graph) re-converts their Python source, for
nothing: both are written graph-safe (Keras 2 was never converted, and TFT's code is TF1-style
graph code). Our own functions are still converted. What it saved: benchmarks/results/ and the
README's "Pipeline speed". The rules are TF's private `autograph.core.config.CONVERSION_RULES`,
so the rule is added on entry and removed on exit, never at import.
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Tuple

from pipelines.speedups import version_check
from pipelines.speedups.replaced import replaced

GRAPH_LIBRARIES: Tuple[str, ...] = ("tf_keras", "tensorflow_transform")


def _config():  # type: ignore[no-untyped-def]
    from tensorflow.python.autograph.core import config as autograph_config

    return autograph_config


def present() -> Tuple[str, ...]:
    """The graph libraries AutoGraph is currently told not to convert."""
    prefixes = {getattr(rule, "_prefix", None) for rule in _config().CONVERSION_RULES}
    return tuple(p for p in GRAPH_LIBRARIES if p in prefixes)


def graph_libraries_unconverted() -> ContextManager[None]:
    """While inside, AutoGraph does not convert tf_keras' or tf.Transform's code."""
    if not version_check.in_effect("autograph_rules"):
        return contextlib.nullcontext()
    config = _config()

    def with_rules(stock: Tuple[Any, ...]) -> Tuple[Any, ...]:
        known = {getattr(rule, "_prefix", None) for rule in stock}
        return stock + tuple(config.DoNotConvert(prefix) for prefix in GRAPH_LIBRARIES
                             if prefix not in known)

    return replaced(config, "CONVERSION_RULES", with_rules)
