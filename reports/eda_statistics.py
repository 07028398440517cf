"""The exploratory report's train-vs-eval statistics: a table per feature, and TFDV's Facets page.

The tables are read from StatisticsGen's protos and render offline; the Facets view is written as
its own linked page (`<name>_facets.html`), the only part of the report that needs a network.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List

STATISTICS_SPLITS = ("train", "eval")
STATISTICS_FILE = "FeatureStats.pb"
FACETS_FILE_SUFFIX = "_facets.html"


def statistics_html(statistics_uri: str) -> str:
    """TFDV's Facets view of a StatisticsGen artifact's train split against its eval split."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.utils import display_util

    paths = {split: os.path.join(statistics_uri, f"Split-{split}", STATISTICS_FILE)
             for split in STATISTICS_SPLITS}
    missing = [p for p in paths.values() if not tf.io.gfile.exists(p)]
    if missing:
        found = (sorted(tf.io.gfile.listdir(statistics_uri))
                 if tf.io.gfile.isdir(statistics_uri) else "no such directory")
        raise FileNotFoundError(
            f"statistics missing: {', '.join(missing)} (in {statistics_uri}: {found}); "
            f"--statistics-uri must be a StatisticsGen output directory"
        )
    train, evaluation = (tfdv.load_stats_binary(paths[s]) for s in STATISTICS_SPLITS)
    return display_util.get_statistics_html(train, evaluation, lhs_name="train", rhs_name="eval")


def statistics_rows(statistics_uri: str) -> List[Dict[str, Any]]:
    """Per feature, train and eval side by side from TFDV's statistics: readable offline."""
    import tensorflow_data_validation as tfdv

    from reports.data_section import split_rows  # the run report's own per-split numbers

    by_split = {split: {".".join(f.path.step): f for f in tfdv.load_stats_binary(os.path.join(
        statistics_uri, f"Split-{split}", STATISTICS_FILE)).datasets[0].features}
        for split in STATISTICS_SPLITS}
    names = sorted(set().union(*(set(features) for features in by_split.values())))
    return [{"name": name, "rows": split_rows(name, {split: found[name]
                                                     for split, found in by_split.items()
                                                     if name in found})}
            for name in names]
