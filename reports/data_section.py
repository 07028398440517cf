"""The data section: per feature, how train and eval compare, and the mean weight per value.

The split comparison is rendered from StatisticsGen's own protos (not TFDV's Facets view, which
needs a CDN). The mean weight per value is the course's GROUP BY view, computed by
`reports.eda_queries.feature_summaries` on the warehouse the run read, when it is reachable.
"""
from __future__ import annotations

import logging
import pathlib
from typing import Any, Dict, List, Optional, Tuple

import markupsafe

from modules import features
from reports import charts
from reports.facts import RunFacts

logger = logging.getLogger(__name__)

STANDARD_HISTOGRAM = 0  # statistics_pb2.Histogram.STANDARD
TOP_VALUES_SHOWN = 12
TYPE_NAMES = {0: "INT", 1: "FLOAT", 2: "STRING", 3: "BYTES", 4: "STRUCT"}


def _name(feature: Any) -> str:
    return ".".join(feature.path.step) if feature.path.step else feature.name


def _feature_stats(split_stats: Any) -> Dict[str, Any]:
    return {_name(f): f for f in split_stats.features}


def _common(feature: Any) -> Any:
    kind = feature.WhichOneof("stats")
    return getattr(feature, kind).common_stats if kind else None


def _order(names: List[str]) -> List[str]:
    """Model features first, in declaration order, then the label, then the rest."""
    declared = [n for n in features.FEATURE_NAMES if n in names]
    label = [n for n in names if n == features.LABEL_KEY]
    return declared + label + sorted(set(names) - set(declared) - set(label))


def _role(name: str) -> str:
    if name in features.FEATURE_NAMES:
        return features.by_name(name).description
    if name == features.LABEL_KEY:
        return "The label: birth weight in pounds."
    if name == features.SPLIT_KEY:
        return "The split key (a fingerprint of year and month), not a model input."
    return "Not a model input."


def _fmt(value: Optional[float]) -> str:
    if value is None:
        return ""
    if abs(value) >= 1e6:
        return f"{value:.3g}"
    return f"{value:,.2f}"


def split_rows(name: str, by_split: Dict[str, Any]) -> List[Dict[str, str]]:
    """The feature's numbers per split: examples, missing share, min/max/mean or unique/top."""
    rows = []
    for split, feature in by_split.items():
        common = _common(feature)
        examples = int(common.num_non_missing + common.num_missing) if common else 0
        missing = 100 * common.num_missing / examples if examples else 0.0
        row = {"split": split, "examples": f"{examples:,}", "missing": f"{missing:.2f}%",
               "type": TYPE_NAMES.get(feature.type, str(feature.type)),
               "min": "", "max": "", "mean": "", "std": "", "unique": "", "top": ""}
        if feature.HasField("num_stats"):
            stats = feature.num_stats
            row.update(min=_fmt(stats.min), max=_fmt(stats.max), mean=_fmt(stats.mean),
                       std=_fmt(stats.std_dev))
        elif feature.HasField("string_stats"):
            stats = feature.string_stats
            row.update(unique=f"{stats.unique:,}",
                       top=", ".join(f"{v.value} ({int(v.frequency):,})"
                                     for v in stats.top_values[:4]))
        rows.append(row)
    return rows


def shared_histograms(facts: RunFacts, per_split: Dict[str, Dict[str, Any]]
                      ) -> Dict[str, Any]:
    """Numeric column -> its histogram on bins shared by every split, from the examples."""
    from reports import split_histograms

    columns = {}
    for stats in per_split.values():
        for name, feature in stats.items():
            if feature.HasField("num_stats") and name != features.SPLIT_KEY:
                columns[name] = "int" if feature.type == 0 else "float"
    if not facts.examples_uri or not columns:
        return {}
    try:
        return split_histograms.histograms(facts.examples_uri, list(per_split), columns)
    except Exception as error:  # noqa: BLE001 - deleted examples must not stop the page
        logger.warning("Could not count the examples on shared bins: %s", error)
        facts.notes.append("The numeric histograms use each split's own bins (StatisticsGen's): "
                           f"the examples could not be read ({type(error).__name__}).")
        return {}


def split_chart(name: str, by_split: Dict[str, Any], shared: Any = None) -> Optional[str]:
    """Histograms (numbers) or value shares (strings) of every split, on one chart."""
    first = next(iter(by_split.values()))
    prefix = f"data-{name}"
    if shared is not None:
        return charts.shared_histogram(name, shared.edges, shared.counts, prefix)
    if first.HasField("string_stats"):
        shares = {}
        for split, feature in by_split.items():
            stats = feature.string_stats
            total = (stats.common_stats.num_non_missing or 1)
            buckets = stats.rank_histogram.buckets or []
            pairs = [(b.label, b.sample_count / total) for b in buckets[:TOP_VALUES_SHOWN]]
            if not pairs:
                pairs = [(v.value, v.frequency / total) for v in stats.top_values]
            shares[split] = pairs
        return charts.category_shares(name, shares, prefix)
    if first.HasField("num_stats"):
        buckets = {}
        for split, feature in by_split.items():
            standard = next((h for h in feature.num_stats.histograms
                             if h.type == STANDARD_HISTOGRAM), None)
            if standard is not None:
                buckets[split] = [(b.low_value, b.high_value, b.sample_count)
                                  for b in standard.buckets]
        return charts.histograms(name, buckets, prefix) if buckets else None
    return None


def mean_weight_views(warehouse: Optional[Tuple[str, Optional[str]]]
                      ) -> Tuple[Dict[str, Dict[str, Any]], Optional[str]]:
    """Feature -> the course's mean-weight-per-value chart and rows; or why there are none."""
    from reports.eda_charts import render_chart, value_label
    from reports.eda_queries import feature_summaries
    from warehouse import engine

    if warehouse is None:
        return {}, "The run recorded no warehouse (its EdaReport did not run)."
    database, source = warehouse
    try:
        connection = engine.connect(pathlib.Path(database), source)
    except Exception as error:  # noqa: BLE001 - a moved or locked warehouse must not stop the page
        return {}, f"The warehouse is not reachable now ({type(error).__name__}: {error})."
    try:
        summaries = feature_summaries(connection)
    except Exception as error:  # noqa: BLE001
        return {}, f"The warehouse could not be queried ({type(error).__name__}: {error})."
    finally:
        connection.close()
    views = {}
    for name, frame in summaries.items():
        svg, _ = render_chart(name, frame, "avg_wt")
        rows = [{"label": value_label(name, r.value),
                 "num_babies": f"{int(r.num_babies):,}",
                 "avg_wt": "" if r.avg_wt != r.avg_wt else f"{r.avg_wt:.3f}"}
                for r in frame.itertuples(index=False)]
        views[name] = {"svg": markupsafe.Markup(svg), "rows": rows}
    return views, None


def context(facts: RunFacts, with_warehouse: bool = True) -> Dict[str, Any]:
    """What the template shows in the data section."""
    split_sizes = [{"split": s, "examples": f"{n:,}"} for s, n in facts.split_sizes.items()]
    if not facts.statistics:
        return {"available": False, "split_sizes": split_sizes, "features": [],
                "warehouse_note": None}
    per_split = {split: _feature_stats(stats) for split, stats in facts.statistics.items()}
    names = _order(sorted({n for stats in per_split.values() for n in stats}))
    if with_warehouse:
        views, note = mean_weight_views(facts.warehouse)
    else:
        views, note = {}, "Left out on request (no warehouse access)."
    shared = shared_histograms(facts, per_split)
    rendered = []
    for name in names:
        by_split = {split: stats[name] for split, stats in per_split.items() if name in stats}
        # The split key's histogram says nothing: each month lands in one split by design.
        chart = (split_chart(name, by_split, shared.get(name))
                 if name != features.SPLIT_KEY else None)
        view = views.get(name)
        rendered.append({
            "name": name,
            "role": _role(name),
            "model_input": name in features.FEATURE_NAMES,
            "chart": markupsafe.Markup(chart) if chart else None,
            "shared_bins": name in shared,
            "rows": split_rows(name, by_split),
            "mean_weight": view,
        })
    database = facts.warehouse[1] or facts.warehouse[0] if facts.warehouse else None
    return {"available": True, "split_sizes": split_sizes, "features": rendered,
            "warehouse_note": note, "warehouse": database}
