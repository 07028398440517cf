"""The training query a model version's examples were read with, for mapping the table's values.

Batch and local prediction accept rows in the natality table's own spelling (plurality 2,
is_male false) and, from a warehouse, apply the query's filters. Both must be the ones the
version was trained with: mapped by this checkout's query file after an edit (a category
renamed, a filter added), a row would reach the model meaning something other than it meant in
training, and nothing would say so. The export records the text
(modules/contract.TRAINING_QUERY_FILE); a version exported before it did is mapped by this
checkout's query, with a warning naming the version.
"""
from __future__ import annotations

import logging
import os

from modules.contract import TRAINING_QUERY_FILE

LOGGER = logging.getLogger("babyweight.serving")


def of_version(version: int, path: str) -> str:
    """The query version `version` (at `path`, local or gs://) records, else the checkout's."""
    import tensorflow as tf

    from warehouse import sql

    checkout = sql.base_query()
    file = os.path.join(path, TRAINING_QUERY_FILE)
    if not tf.io.gfile.exists(file):
        LOGGER.warning("Version %d records no training query (%s; exported before versions "
                       "recorded it): the table's values are mapped by this checkout's %s",
                       version, TRAINING_QUERY_FILE, sql.QUERY_FILE.name)
        return checkout
    with tf.io.gfile.GFile(file) as handle:
        text = handle.read()
    if text != checkout:
        LOGGER.warning("Version %d was trained with another training query than this "
                       "checkout's %s: the table's values are mapped and filtered by the "
                       "version's own (%s)", version, sql.QUERY_FILE.name, TRAINING_QUERY_FILE)
    return text
