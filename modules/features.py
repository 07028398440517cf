"""The one declaration of babyweight's features.

Everything that needs to know a feature's name, kind, domain or bucketing reads it from here:
the curated schema (checked against this file by a test), tf.Transform's preprocessing_fn, the
Keras model's inputs, the serving signature and the REST server's request validation.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple, Union

LABEL_KEY = "weight_pounds"
# The conversion the warehouse applies to the recorded grams (weight_pounds = grams * this).
POUNDS_PER_GRAM = 0.00220462262185


@dataclasses.dataclass(frozen=True)
class LabelRange:
    """The weights a birth can have, as the warehouse records them (whole grams).

    The model's output layer cannot leave this range and the Evaluator refuses a model whose
    eval predictions do: a negative or 40 lb baby is not an estimate, it is a bug.
    """

    min_grams: int
    max_grams: int

    @property
    def min_pounds(self) -> float:
        return self.min_grams * POUNDS_PER_GRAM

    @property
    def max_pounds(self) -> float:
        return self.max_grams * POUNDS_PER_GRAM

    def contains(self, pounds: float) -> bool:
        return self.min_pounds <= pounds <= self.max_pounds


# The generator writes (and the real table holds) 227 g (half a pound) to 8165 g (18 lb).
LABEL_RANGE = LabelRange(min_grams=227, max_grams=8165)

# The canonical spellings. The warehouse query produces exactly these strings; a BOOL cast to
# STRING would give 'true'/'false' on BigQuery and fall out of the vocabulary.
IS_MALE_TRUE = "True"
IS_MALE_FALSE = "False"
IS_MALE_UNKNOWN = "Unknown"

PLURALITY_NAMES: Tuple[str, ...] = (
    "Single(1)",
    "Twins(2)",
    "Triplets(3)",
    "Quadruplets(4)",
    "Quintuplets(5)",
)
# Heavier to lighter: at the same other inputs, each extra baby means a lighter one (the model's
# plurality effect is monotone along this chain by construction; see modules/model.py).
PLURALITY_ORDER: Tuple[str, ...] = PLURALITY_NAMES
PLURALITY_MULTIPLE_UNKNOWN = "Multiple(2+)"


@dataclasses.dataclass(frozen=True)
class CategoricalFeature:
    """A string feature with a closed vocabulary.

    `missing_value` is the spelling the query's "no ultrasound" augmentation produces, and what
    the Transform makes of a blank value. `may_be_absent` says whether a prediction request may
    leave the feature out to mean `missing_value`: sex, yes (no ultrasound); plurality, no,
    because a mother without an ultrasound still knows whether she carries one baby or several,
    and reading "left out" as 'Multiple(2+)' would predict a twin's weight for a single birth.
    """

    name: str
    vocabulary: Tuple[str, ...]
    missing_value: Optional[str] = None
    description: str = ""
    may_be_absent: bool = True
    # Largest L-infinity distance between value shares that monitoring accepts: training vs
    # served traffic (skew), and one window of traffic vs the one before (drift).
    skew_threshold: float = 0.05
    drift_threshold: float = 0.05

    @property
    def required(self) -> bool:
        """Whether every prediction request must give a value."""
        return self.missing_value is None or not self.may_be_absent


@dataclasses.dataclass(frozen=True)
class NumericFeature:
    """An integer-valued numeric feature with a valid range and bucket edges for the wide part."""

    name: str
    min_value: int
    max_value: int
    bucket_boundaries: Tuple[float, ...]
    description: str = ""
    # Largest Jensen-Shannon divergence between histograms that monitoring accepts, training vs
    # served traffic (skew) and window vs previous window (drift).
    skew_threshold: float = 0.1
    drift_threshold: float = 0.1

    @property
    def required(self) -> bool:
        return True


Feature = Union[CategoricalFeature, NumericFeature]

IS_MALE = CategoricalFeature(
    name="is_male",
    vocabulary=(IS_MALE_TRUE, IS_MALE_FALSE, IS_MALE_UNKNOWN),
    missing_value=IS_MALE_UNKNOWN,
    description="Baby's sex: 'True' (boy), 'False' (girl) or 'Unknown' (no ultrasound).",
)
PLURALITY = CategoricalFeature(
    name="plurality",
    vocabulary=PLURALITY_NAMES + (PLURALITY_MULTIPLE_UNKNOWN,),
    missing_value=PLURALITY_MULTIPLE_UNKNOWN,
    description="Number of babies born at once; 'Multiple(2+)' when known only to be several.",
    may_be_absent=False,
)
MOTHER_AGE = NumericFeature(
    name="mother_age",
    min_value=10,
    max_value=60,
    bucket_boundaries=(18.0, 21.0, 25.0, 30.0, 35.0, 40.0, 45.0),
    description="Mother's age in whole years.",
)
GESTATION_WEEKS = NumericFeature(
    name="gestation_weeks",
    min_value=17,
    max_value=47,
    bucket_boundaries=(28.0, 32.0, 35.0, 37.0, 38.0, 39.0, 40.0, 41.0, 42.0),
    description="Weeks of gestation at birth.",
)

CATEGORICAL_FEATURES: Tuple[CategoricalFeature, ...] = (IS_MALE, PLURALITY)
NUMERIC_FEATURES: Tuple[NumericFeature, ...] = (MOTHER_AGE, GESTATION_WEEKS)
FEATURES: Tuple[Feature, ...] = CATEGORICAL_FEATURES + NUMERIC_FEATURES
FEATURE_NAMES: Tuple[str, ...] = tuple(f.name for f in FEATURES)

# Monitoring's threshold for the served predictions' distribution against the same model's
# predictions on its eval split (Jensen-Shannon divergence).
PREDICTION_SKEW_THRESHOLD = 0.1

# The mother_age x gestation_weeks cross, hashed into this many buckets.
CROSS_HASH_BUCKETS = 100
# Columns the query carries that are not model inputs: the split key.
SPLIT_KEY = "hashmonth"
# meaning()'s part for the categorical features, the one the server's request checks read.
MEANING_CATEGORICAL = "categorical"


def meaning() -> Dict[str, Any]:
    """What gives the model's input ids their meaning: vocabularies, missing values, buckets.

    A model trained under one meaning must not seed a model trained under another (warm start
    compares this); descriptions and valid ranges do not change what an id stands for.
    """
    return {
        MEANING_CATEGORICAL: {f.name: {"vocabulary": list(f.vocabulary), "missing": f.missing_value}
                        for f in CATEGORICAL_FEATURES},
        "numeric": {f.name: {"bucket_boundaries": list(f.bucket_boundaries)}
                    for f in NUMERIC_FEATURES},
        "cross_hash_buckets": CROSS_HASH_BUCKETS,
    }


def meaning_differences(recorded: Any, ours: Any = None, where: str = "") -> List[str]:
    """Where a meaning recorded with a model (features.meaning's JSON form) differs from this
    file's, one line each ("categorical.plurality.vocabulary: the model's [...], this
    checkout's [...]"); empty when they are the same."""
    if ours is None:
        ours = meaning()
    if isinstance(recorded, dict) and isinstance(ours, dict):
        lines: List[str] = []
        for key in sorted(set(recorded) | set(ours)):
            name = f"{where}.{key}" if where else str(key)
            if key not in ours:
                lines.append(f"{name}: only the model's")
            elif key not in recorded:
                lines.append(f"{name}: only this checkout's")
            else:
                lines.extend(meaning_differences(recorded[key], ours[key], name))
        return lines
    if recorded == ours:
        return []
    return [f"{where or 'meaning'}: the model's {recorded!r}, this checkout's {ours!r}"]


def by_name(name: str) -> Feature:
    """The declared feature called `name`; KeyError names the unknown feature."""
    for feature in FEATURES:
        if feature.name == name:
            return feature
    raise KeyError(f"unknown feature {name!r}; declared features: {', '.join(FEATURE_NAMES)}")
