"""The exploratory report's per-feature charts and how a raw value reads in them."""
from __future__ import annotations

import math
from typing import Any, Sequence, Tuple

import pandas as pd

from modules import features
from reports.charts import style_axes, svg_of_figure

# Counts spanning more than this ratio (max / min) get a log y axis, or the rare values vanish.
LOG_SCALE_RATIO = 100.0


def value_label(feature_name: str, value: Any) -> str:
    """How a raw value reads: plurality 2 as 'Twins(2)', booleans in the model's spelling."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "NULL"
    if hasattr(value, "item"):  # numpy scalar -> Python scalar
        value = value.item()
    if isinstance(value, bool):
        if feature_name == features.IS_MALE.name:
            return features.IS_MALE_TRUE if value else features.IS_MALE_FALSE
        return str(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if (feature_name == features.PLURALITY.name and isinstance(value, int)
            and 1 <= value <= len(features.PLURALITY_NAMES)):
        return features.PLURALITY_NAMES[value - 1]
    return str(value)


def use_log_scale(counts: Sequence[int]) -> bool:
    """True when the counts span more than ~2 orders of magnitude."""
    positive = [c for c in counts if c > 0]
    return bool(positive) and max(positive) / min(positive) > LOG_SCALE_RATIO


def render_chart(feature_name: str, frame: pd.DataFrame, column: str) -> Tuple[str, str]:
    """One chart of `column` per value: bars for categorical features, a line for numeric ones.

    Returns (svg, y scale actually used). Numeric charts leave out the NULL group, which has no
    place on the x axis; the table still lists it.
    """
    from matplotlib.figure import Figure

    categorical = isinstance(features.by_name(feature_name), features.CategoricalFeature)
    y_label = "number of babies" if column == "num_babies" else "mean weight (pounds)"
    figure = Figure(figsize=(5.0, 3.0))
    axes = figure.add_subplot()
    if categorical:
        labels = [value_label(feature_name, v) for v in frame["value"]]
        axes.bar(range(len(frame)), frame[column], color="#4c72b0")
        crowded = len(labels) > 3
        axes.set_xticks(range(len(frame)), labels, rotation=20 if crowded else 0,
                        ha="right" if crowded else "center")
    else:
        known = frame[frame["value"].notna()]
        axes.plot(known["value"].astype("float64"), known[column], marker="o", markersize=3,
                  color="#4c72b0")
    if column == "num_babies":
        if use_log_scale(frame[column].tolist()):
            axes.set_yscale("log")
        else:
            axes.set_ylim(bottom=0)  # a count axis not starting at zero exaggerates differences
    axes.set_xlabel(feature_name)
    axes.set_ylabel(y_label)
    style_axes(axes)
    return (svg_of_figure(figure, f"{y_label} by {feature_name}", f"{feature_name}-{column}"),
            axes.get_yscale())
