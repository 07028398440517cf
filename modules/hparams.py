"""The model's hyperparameters: one frozen dataclass, usable as flags, as TFX custom_config and as a
KerasTuner search space.

Why one dataclass: the runner's flags (`pipelines.config.add_flags`), the Trainer's
`custom_config['hyperparameters']` and the Tuner's search space all describe the same knobs, so
they are declared once here and converted, never re-spelled.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Dict, Mapping, Tuple

if TYPE_CHECKING:  # keras_tuner imports TensorFlow; only tuner code pays for it.
    import keras_tuner


def _setting(default: Any, help: str, **bounds: Any) -> Any:  # noqa: A002 - mirrors argparse
    """As common.config.setting (its `minimum`, `above`, `maximum` bounds too), without
    importing it: the Trainer's module code stays free of the flag helpers."""
    return dataclasses.field(default=default, metadata={"help": help, **bounds})


@dataclasses.dataclass(frozen=True)
class HyperParameters:
    """Model size and training schedule of the wide-and-deep regressor.

    Defaults are sized for 100k-200k training rows on a 2-core CPU: a few thousand steps of a
    small network, well under a minute.
    """

    hidden_units: str = _setting("64,32", "Deep part's hidden layer sizes, comma-separated.")
    embedding_dim: int = _setting(
        8, "Size of the deep part's embeddings of categorical ids.", minimum=1)
    batch_size: int = _setting(512, "Training batch size.", minimum=1)
    learning_rate: float = _setting(0.005, "Adam learning rate.", above=0)
    epochs: int = _setting(
        5, "Training epochs (early stopping may end training sooner).", minimum=1)
    train_steps_per_epoch: int = _setting(
        0, "Steps per epoch; 0 = one pass over the (possibly capped) training data.", minimum=0)
    num_train_examples: int = _setting(
        0, "Read at most this many training examples; 0 = all of them.", minimum=0)
    early_stopping_patience: int = _setting(
        2, "Epochs without a lower validation loss before training stops.", minimum=0)

    def __post_init__(self) -> None:
        self.hidden_layer_sizes()  # fail at construction, not deep inside model building
        positive = ("embedding_dim", "batch_size", "epochs")
        non_negative = ("train_steps_per_epoch", "num_train_examples", "early_stopping_patience")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")

    def hidden_layer_sizes(self) -> Tuple[int, ...]:
        """`hidden_units` parsed: '64,32' -> (64, 32); '' means no hidden layer."""
        try:
            sizes = tuple(int(part) for part in self.hidden_units.split(",") if part.strip())
        except ValueError:
            raise ValueError(f"hidden_units must be comma-separated integers, "
                             f"got {self.hidden_units!r}") from None
        if any(size <= 0 for size in sizes):
            raise ValueError(f"hidden_units must be positive, got {self.hidden_units!r}")
        return sizes

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able form for TFX `custom_config` (which is serialized as JSON)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "HyperParameters":
        """Inverse of `to_dict`; unknown keys are an error so a typo cannot be silently ignored."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown hyperparameters {unknown}; known: {sorted(names)}")
        return cls(**dict(values))

    def with_tuned(self, tuned: Mapping[str, Any]) -> "HyperParameters":
        """These values overridden by a tuner's values; tuner-internal keys are ignored."""
        names = {field.name for field in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in tuned.items() if k in names})


# What the Tuner searches; everything else comes from the base HyperParameters.
HIDDEN_UNITS_CHOICES: Tuple[str, ...] = ("32", "64,32", "128,64", "64,32,16")
EMBEDDING_DIM_CHOICES: Tuple[int, ...] = (4, 8, 16)
BATCH_SIZE_CHOICES: Tuple[int, ...] = (256, 512, 1024)
LEARNING_RATE_RANGE: Tuple[float, float] = (1e-3, 3e-2)


def search_space(base: HyperParameters = HyperParameters()) -> "keras_tuner.HyperParameters":
    """The KerasTuner search space, with the base values as each knob's default (first trial)."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.Choice("hidden_units", _with_default(HIDDEN_UNITS_CHOICES, base.hidden_units),
              default=base.hidden_units)
    hp.Choice("embedding_dim", _with_default(EMBEDDING_DIM_CHOICES, base.embedding_dim),
              default=base.embedding_dim)
    hp.Choice("batch_size", _with_default(BATCH_SIZE_CHOICES, base.batch_size),
              default=base.batch_size)
    low, high = LEARNING_RATE_RANGE
    hp.Float("learning_rate", min(low, base.learning_rate), max(high, base.learning_rate),
             sampling="log", default=base.learning_rate)
    return hp


def from_keras_tuner(hp: "keras_tuner.HyperParameters",
                     base: HyperParameters = HyperParameters()) -> HyperParameters:
    """The base values overridden by whatever `hp` holds (a trial's or the best values)."""
    return base.with_tuned(hp.values)


def _with_default(choices: Tuple[Any, ...], default: Any) -> list:
    return list(choices) if default in choices else [default, *choices]
