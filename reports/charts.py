"""The report's charts: matplotlib figures pasted into the page as inline SVG.

Inline SVG keeps a report one file that renders offline; `svg_of_figure` is the project's one
converter, so every chart (run reports, the exploratory report, the monitoring page) gets unique
element ids and byte-stable output.
"""
from __future__ import annotations

import io
import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # a report is written by a pipeline or a CLI, never shown on a screen

import markupsafe  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

SPLIT_COLOURS = {"train": "#4c72b0", "eval": "#dd8452", "test": "#55a868"}
CANDIDATE = "#4c72b0"
BASELINE = "#b8b8b8"


def svg_of_figure(figure: Any, label: str, id_prefix: str) -> str:
    """The figure as an <svg> element to paste into HTML: no XML prolog or metadata, sized by CSS.

    Element ids get `id_prefix`, so several charts on one page never share an id; with a fixed
    hash salt the same data gives byte-identical charts.
    """
    buffer = io.StringIO()
    # Text stays text (small, selectable). bbox_inches="tight" fits the saved area to every
    # label, so no figure.tight_layout() first: that drew each chart once more, a third of
    # a report's time.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "babyweight-eda"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight",
                       metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{id_prefix}-\1"', svg)
    svg = svg.replace("url(#", f"url(#{id_prefix}-").replace('href="#', f'href="#{id_prefix}-')
    head_end = svg.index(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", svg[:head_end])
    aria = markupsafe.escape(label)
    return f'{head} role="img" aria-label="{aria}"{svg[head_end:]}'


def style_axes(axes: Any) -> None:
    """The project's chart look: a light y grid, no top or right frame."""
    axes.grid(axis="y", alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)


def crowded(labels: Sequence[str], room: float = 44.0) -> bool:
    """Whether horizontal tick labels would run into each other on a 5-inch axis (then they
    are drawn upright, which never collide: slanted ones overlap their neighbours' space).

    Judged by the labels' total length (about `room` characters fit side by side), not their
    number: five long plurality names collide where eight short age buckets do not.
    """
    widest = max((max(len(line) for line in str(label).split("\n")) for label in labels),
                 default=0)
    return widest * len(labels) > room


def category_shares(feature: str, shares: Dict[str, List[Tuple[str, float]]],
                    id_prefix: str) -> str:
    """Grouped bars: each split's share of examples per value, so splits of any size compare."""
    values: List[str] = []
    for pairs in shares.values():
        for value, _ in pairs:
            if value not in values:
                values.append(value)
    figure = Figure(figsize=(5.2, 3.0))
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(shares))
    for index, (split, pairs) in enumerate(shares.items()):
        lookup = dict(pairs)
        positions = [i + (index - (len(shares) - 1) / 2) * width for i in range(len(values))]
        axes.bar(positions, [100 * lookup.get(v, 0.0) for v in values], width=width,
                 label=split, color=SPLIT_COLOURS.get(split))
    tilt = crowded(values)
    axes.set_xticks(range(len(values)), values, rotation=90 if tilt else 0)
    axes.set_ylabel("% of the split's examples")
    axes.set_xlabel(feature)
    axes.legend(frameon=False, fontsize=8)
    style_axes(axes)
    return svg_of_figure(figure, f"share of examples per value of {feature}, by split", id_prefix)


def histograms(feature: str, buckets: Dict[str, List[Tuple[float, float, float]]],
               id_prefix: str) -> str:
    """Each split's histogram as a step line of the share of examples per unit of the feature.

    StatisticsGen buckets each split over its own range, so heights are densities (share per
    unit), which stay comparable when two splits' buckets differ.
    """
    figure = Figure(figsize=(5.2, 3.0))
    axes = figure.add_subplot()
    for split, rows in buckets.items():
        total = sum(count for _, _, count in rows) or 1.0
        if not rows:
            continue
        widths = [high - low for low, high, _ in rows]
        if all(w <= 0 for w in widths):  # a single value: one spike
            axes.bar([rows[0][0]], [100.0], width=0.6, alpha=0.6, label=split,
                     color=SPLIT_COLOURS.get(split))
            continue
        floor = min(w for w in widths if w > 0)
        edges = [rows[0][0]] + [max(high, low + floor) for low, high, _ in rows]
        densities = [100 * count / total / max(w, floor) for (_, _, count), w in
                     zip(rows, widths)]
        axes.stairs(densities, edges, label=split, color=SPLIT_COLOURS.get(split),
                    linewidth=1.8, fill=False)
    axes.set_ylim(bottom=0)
    axes.set_ylabel("% of examples per unit")
    axes.set_xlabel(feature)
    axes.legend(frameon=False, fontsize=8)
    style_axes(axes)
    return svg_of_figure(figure, f"distribution of {feature}, by split", id_prefix)


def slice_rmse(feature: str, labels: Sequence[str], candidate: Sequence[float],
               baseline: Sequence[Optional[float]], counts: Sequence[float],
               overall: Optional[float], bound: Optional[float], id_prefix: str,
               names: Tuple[str, str] = ("candidate", "baseline"),
               intervals: Optional[Sequence[Optional[Tuple[float, float]]]] = None) -> str:
    """Bars of RMSE per value of one slice feature: the candidate and, beside it, the baseline.

    Each value's label carries its example count, and each candidate bar its confidence
    interval when known, so a bad RMSE on a handful of examples reads as such.
    """
    has_baseline = any(b is not None for b in baseline)
    figure = Figure(figsize=(5.2, 3.2))
    axes = figure.add_subplot()
    width = 0.4 if has_baseline else 0.65
    offset = width / 2 if has_baseline else 0.0
    xs = range(len(labels))
    axes.bar([x - offset for x in xs], candidate, width=width, color=CANDIDATE,
             label=names[0])
    spans = [(i, c, span) for i, (c, span) in enumerate(zip(candidate, intervals or []))
             if span is not None]
    if spans:
        axes.errorbar([i - offset for i, _, _ in spans], [c for _, c, _ in spans],
                      yerr=[[max(0.0, c - s[0]) for _, c, s in spans],
                            [max(0.0, s[1] - c) for _, c, s in spans]],
                      fmt="none", ecolor="#222", elinewidth=1, capsize=3,
                      label="95% interval")
    if has_baseline:
        axes.bar([x + offset for x in xs],
                 [b if b is not None else math.nan for b in baseline], width=width,
                 color=BASELINE, label=names[1])
    top = max([v for v in list(candidate) + [b for b in baseline if b is not None]
               + [s[1] for _, _, s in spans]
               if v is not None and not math.isnan(v)] + [bound or 0.0, 0.1])
    if overall is not None:
        axes.axhline(overall, color="#333", linestyle=":", linewidth=1, label="overall")
    if bound is not None:
        axes.axhline(bound, color="#c44e52", linestyle="--", linewidth=1, label="overall bound")
    ticks = [f"{label}\nn={int(count):,}" for label, count in zip(labels, counts)]
    tilt = crowded(ticks)
    axes.set_xticks(list(xs), ticks, rotation=90 if tilt else 0, fontsize=8 if tilt else 9)
    axes.set_ylim(0, top * 1.18)
    axes.set_ylabel("RMSE (lb)")
    axes.set_xlabel(feature)
    axes.legend(frameon=False, fontsize=8, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    style_axes(axes)
    return svg_of_figure(figure, f"RMSE per {feature} slice", id_prefix)


def shared_histogram(feature: str, edges: Sequence[float], counts: Dict[str, Sequence[float]],
                     id_prefix: str) -> str:
    """Each split's share of its examples per bin, every split on the same bins."""
    figure = Figure(figsize=(5.2, 3.0))
    axes = figure.add_subplot()
    for split, values in counts.items():
        total = float(sum(values)) or 1.0
        axes.stairs([100 * v / total for v in values], list(edges), label=split,
                    color=SPLIT_COLOURS.get(split), linewidth=1.8, fill=False)
    axes.set_ylim(bottom=0)
    axes.set_ylabel("% of the split's examples per bin")
    axes.set_xlabel(feature)
    axes.legend(frameon=False, fontsize=8)
    style_axes(axes)
    return svg_of_figure(figure, f"distribution of {feature}, by split, on shared bins",
                         id_prefix)
