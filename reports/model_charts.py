"""The two views a regression analyst checks first: calibration by decile, residuals by week."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from matplotlib.figure import Figure

from reports.charts import CANDIDATE, style_axes, svg_of_figure
from reports.uncertainty import Interval


def calibration(deciles: Sequence[Tuple[float, float, int]], id_prefix: str) -> str:
    """Mean actual weight against mean predicted weight per decile of the prediction.

    On the diagonal, the model is right on average at every level of its own prediction; a
    flatter line says it predicts extremes that do not happen (or the reverse).
    """
    figure = Figure(figsize=(5.2, 3.4))
    axes = figure.add_subplot()
    predicted = [d[0] for d in deciles]
    actual = [d[1] for d in deciles]
    low = min(predicted + actual)
    high = max(predicted + actual)
    pad = 0.05 * (high - low or 1.0)
    axes.plot([low - pad, high + pad], [low - pad, high + pad], color="#999", linestyle="--",
              linewidth=1, label="perfect calibration")
    axes.plot(predicted, actual, marker="o", color=CANDIDATE, linewidth=1.5,
              label="mean per decile")
    axes.set_xlim(low - pad, high + pad)
    axes.set_ylim(low - pad, high + pad)
    axes.set_xlabel("mean predicted weight (lb)")
    axes.set_ylabel("mean actual weight (lb)")
    axes.legend(frameon=False, fontsize=8, loc="upper left")
    style_axes(axes)
    return svg_of_figure(figure, "predicted against actual weight by decile of the prediction",
                         id_prefix)


def residuals_by_week(rows: Sequence[Tuple[float, int, float, Optional[Interval]]],
                      id_prefix: str) -> str:
    """Mean residual (actual minus predicted) per gestation week, with its interval."""
    figure = Figure(figsize=(5.2, 3.4))
    axes = figure.add_subplot()
    weeks = [r[0] for r in rows]
    means = [r[2] for r in rows]
    with_interval: List[Tuple[float, float, Interval]] = [
        (r[0], r[2], r[3]) for r in rows if r[3] is not None]
    axes.axhline(0.0, color="#999", linestyle="--", linewidth=1)
    axes.plot(weeks, means, marker="o", markersize=3, color=CANDIDATE, linewidth=1.2,
              label="mean residual")
    if with_interval:
        axes.errorbar([w for w, _, _ in with_interval], [m for _, m, _ in with_interval],
                      yerr=[[max(0.0, m - i.low) for _, m, i in with_interval],
                            [max(0.0, i.high - m) for _, m, i in with_interval]],
                      fmt="none", ecolor="#444", elinewidth=0.8, capsize=2,
                      label="95% interval")
    axes.set_xlabel("gestation weeks")
    axes.set_ylabel("actual − predicted (lb)")
    axes.legend(frameon=False, fontsize=8, loc="best")
    style_axes(axes)
    return svg_of_figure(figure, "mean residual per gestation week", id_prefix)
