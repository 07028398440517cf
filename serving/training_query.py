"""What a model version was trained with: its categories, its training query and split
buckets.

Requests are checked against this checkout's modules/features.py before they reach a model; a
version trained with other categories (a value renamed, added or removed) says so in a warning
when it loads (`note_feature_meaning`), since a request's value it does not know is then
refused by its own graph's checks rather than by the server's (modules/serving_checks.py).
Batch and local prediction accept rows in the natality table's own spelling (plurality 2,
is_male false) and, from a warehouse, apply the query's filters. Both must be the ones the
version was trained with: mapped by this checkout's query file after an edit (a category
renamed, a filter added), a row would reach the model meaning something other than it meant in
training, and nothing would say so. Likewise batch prediction's --split: cut by this checkout's
default buckets, "the eval split" of a version trained with other split flags would hold rows
it was trained on, and scoring them would look better than the model is. The export records
both (modules/contract.TRAINING_QUERY_FILE, TRAINING_SPLITS_FILE); a version exported before it
did is read with this checkout's query and the default buckets, with a warning naming the
version.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Dict, Mapping, Tuple

from common.config import HASH_BUCKETS_KEY, SPLIT_BUCKETS_KEY, DataConfig
from modules import features
from modules.contract import FEATURE_MEANING_FILE, TRAINING_QUERY_FILE, TRAINING_SPLITS_FILE

LOGGER = logging.getLogger("babyweight.serving")


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """What a version's examples were: the query's text and its splits' bucket ranges."""

    query: str
    hash_buckets: int
    split_buckets: Mapping[str, Tuple[int, int]]

    @classmethod
    def of_checkout(cls) -> "TrainingData":
        """This checkout's query file and the default buckets."""
        from warehouse import sql

        return cls.of_layout(sql.base_query(), DataConfig().split_layout())

    @classmethod
    def of_layout(cls, query: str, layout: Mapping[str, Any]) -> "TrainingData":
        """From DataConfig.split_layout's JSON form."""
        return cls(query, int(layout[HASH_BUCKETS_KEY]),
                   {name: (int(lo), int(hi)) for name, (lo, hi) in
                    dict(layout[SPLIT_BUCKETS_KEY]).items()})


def _read(path: str) -> str:
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as handle:
        return handle.read()


def _exists(path: str) -> bool:
    import tensorflow as tf

    return tf.io.gfile.exists(path)


def note_feature_meaning(version: int, path: str) -> None:
    """Warns when version `version` (at `path`) was trained with other vocabularies or missing
    values than modules/features.py's, which check its requests."""
    file = os.path.join(path, FEATURE_MEANING_FILE)
    if not _exists(file):
        LOGGER.warning("Version %d records no features' meaning (%s; exported before versions "
                       "recorded it): its requests are checked against this checkout's "
                       "modules/features.py as they are", version, FEATURE_MEANING_FILE)
        return
    categorical = features.MEANING_CATEGORICAL
    try:
        recorded = json.loads(_read(file))[categorical]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"version {version}'s {FEATURE_MEANING_FILE} is not a features' "
                         f"meaning ({type(error).__name__}: {error})") from None
    differences = features.meaning_differences(recorded, features.meaning()[categorical],
                                               categorical)
    if differences:
        LOGGER.warning("Version %d was trained with other categories than this checkout's "
                       "modules/features.py (%s): requests are checked against this "
                       "checkout's, and a value the version was not trained with is refused "
                       "by its own graph (a 400 naming the feature), not predicted; serve it "
                       "from the checkout it was trained in for its own checks",
                       version, "; ".join(differences))


def query_of_version(version: int, path: str) -> str:
    """The query version `version` (at `path`, local or gs://) records, else the checkout's."""
    from warehouse import sql

    checkout = sql.base_query()
    file = os.path.join(path, TRAINING_QUERY_FILE)
    if not _exists(file):
        LOGGER.warning("Version %d records no training query (%s; exported before versions "
                       "recorded it): the table's values are mapped by this checkout's %s",
                       version, TRAINING_QUERY_FILE, sql.QUERY_FILE.name)
        return checkout
    text = _read(file)
    if text != checkout:
        LOGGER.warning("Version %d was trained with another training query than this "
                       "checkout's %s: the table's values are mapped and filtered by the "
                       "version's own (%s)", version, sql.QUERY_FILE.name, TRAINING_QUERY_FILE)
    return text


def _layout_of_version(version: int, path: str) -> Dict[str, Any]:
    file = os.path.join(path, TRAINING_SPLITS_FILE)
    if not _exists(file):
        LOGGER.warning("Version %d records no split buckets (%s; exported before versions "
                       "recorded them): its splits are taken to be the default ones",
                       version, TRAINING_SPLITS_FILE)
        return DataConfig().split_layout()
    try:
        layout = json.loads(_read(file))
        TrainingData.of_layout("", layout)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"version {version}'s {TRAINING_SPLITS_FILE} is not a split layout "
                         f"({type(error).__name__}: {error})") from None
    return layout


def of_version(version: int, path: str, with_splits: bool = False) -> TrainingData:
    """The query version `version` records (else the checkout's) and, `with_splits`, its
    split buckets (else the default ones). Only --split reads the buckets, so only it reads
    the file, and is warned of its absence or refused a broken one."""
    layout = _layout_of_version(version, path) if with_splits else DataConfig().split_layout()
    return TrainingData.of_layout(query_of_version(version, path), layout)
