"""The two layers that make the model's answers physically possible, whatever it learned.

BoundedOutput: the prediction is a scaled sigmoid between the label's declared bounds, so no
input (a corner of the feature space, a rare plurality) can produce a negative or 40 lb baby.

MonotoneOffset: one id feature's effect along a declared order is non-increasing by
construction (minus a cumulative sum of softplus increments), per group of another id feature.
Where the data is thin (a couple of quadruplet births) a free embedding can invert what the
data says; a chain of non-negative steps cannot.

Both are registered Keras layers, so a model saved with `save_traces=False` revives from their
configs (warm start loads the last model that way).
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np
import tensorflow as tf
import tf_keras


def inward_float32(low: float, high: float) -> Tuple[float, float]:
    """The float32 numbers nearest to [low, high] that lie inside it.

    float32(low) may round below `low`; a prediction clipped to these bounds is inside the
    declared range exactly, not just to float32's precision.
    """
    lo, hi = np.float32(low), np.float32(high)
    if float(lo) < low:
        lo = np.nextafter(lo, np.float32(np.inf))
    if float(hi) > high:
        hi = np.nextafter(hi, np.float32(-np.inf))
    return float(lo), float(hi)


def logit_of(value: float, low: float, high: float) -> float:
    """The pre-activation at which BoundedOutput(low, high) gives `value` (kept off the ends)."""
    share = min(max((value - low) / (high - low), 1e-6), 1 - 1e-6)
    return float(np.log(share / (1 - share))) * (high - low) / 4


@tf_keras.utils.register_keras_serializable(package="babyweight")
class BoundedOutput(tf_keras.layers.Layer):
    """low + (high - low) * sigmoid(4 z / (high - low)): every output lies in [low, high].

    The 4 / (high - low) makes the slope 1 at the middle of the range, so near the typical
    weight the layers before it learn as they would with a plain linear output (Adam's steps
    are in weight units: a steeper output would amplify each one). The clip only absorbs
    float32 rounding at a saturated sigmoid; the sigmoid does the bounding.
    """

    def __init__(self, low: float, high: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not low < high:
            raise ValueError(f"BoundedOutput needs low < high, got {low} and {high}")
        self.low, self.high = float(low), float(high)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        # In float64: float32's sigmoid takes another vector path for a batch's last few rows,
        # so a row's answer would change in its last bits with the batch it came in.
        lo, hi = inward_float32(self.low, self.high)
        span = self.high - self.low
        z = tf.cast(inputs, tf.float64)
        scaled = self.low + span * tf.sigmoid(z * (4.0 / span))
        return tf.cast(tf.clip_by_value(scaled, lo, hi), inputs.dtype)

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "low": self.low, "high": self.high}


@tf_keras.utils.register_keras_serializable(package="babyweight")
class MonotoneOffset(tf_keras.layers.Layer):
    """offset[group, id]: non-increasing over ids 0..chain-1, free for the ids after the chain.

    Inputs: [id, group], each an int64 [batch] tensor. offset(id 0) is 0 (the other parts of the
    model carry the level); each later id in the chain subtracts softplus(shared step +
    group's step) more. A shared step learns from every group, so a group with few examples
    still gets the average penalty. The ids past the chain (an unknown count, out of
    vocabulary) get free offsets: they are not on the ordering.
    """

    def __init__(self, num_ids: int, chain: int, num_groups: int,
                 initial_step: float = 0.3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 1 <= chain <= num_ids:
            raise ValueError(f"MonotoneOffset needs 1 <= chain ({chain}) <= num_ids ({num_ids})")
        self.num_ids, self.chain, self.num_groups = int(num_ids), int(chain), int(num_groups)
        self.initial_step = float(initial_step)

    def build(self, input_shape: Any) -> None:
        # softplus^-1(initial_step): each step starts at `initial_step` in logit units.
        start = float(np.log(np.expm1(self.initial_step)))
        steps = self.chain - 1
        self.shared_steps = self.add_weight(
            name="shared_steps", shape=(steps,),
            initializer=tf_keras.initializers.Constant(start))
        self.group_steps = self.add_weight(
            name="group_steps", shape=(self.num_groups, steps),
            initializer="zeros")
        self.free = self.add_weight(
            name="free", shape=(self.num_groups, self.num_ids - self.chain),
            initializer="zeros")
        super().build(input_shape)

    def offsets(self) -> tf.Tensor:
        """The [num_groups, num_ids] table of offsets."""
        steps = tf.nn.softplus(self.shared_steps[tf.newaxis, :] + self.group_steps)
        chain = -tf.cumsum(steps, axis=1)
        zeros = tf.zeros([self.num_groups, 1], dtype=chain.dtype)
        return tf.concat([zeros, chain, self.free], axis=1)

    def call(self, inputs: Any) -> tf.Tensor:
        ids, groups = inputs
        ids = tf.clip_by_value(tf.cast(ids, tf.int32), 0, self.num_ids - 1)
        groups = tf.clip_by_value(tf.cast(groups, tf.int32), 0, self.num_groups - 1)
        picked = tf.gather_nd(self.offsets(), tf.stack([groups, ids], axis=-1))
        return tf.reshape(picked, [-1, 1])

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "num_ids": self.num_ids, "chain": self.chain,
                "num_groups": self.num_groups, "initial_step": self.initial_step}
