"""The course's exploratory analysis of the natality data, as one HTML file for a browser.

Per feature it runs the course's GROUP BY query on the raw table (rows and mean weight per
value), written in BigQuery Standard SQL and translated by `warehouse.sql.to_duckdb`, so the very
statements shown in the report would also run on BigQuery. The numbers become inline SVG charts
and tables; with a StatisticsGen run, a table per feature compares its train and eval
statistics, and TFDV's interactive Facets view of them is written as a separate linked page
(`<name>_facets.html`), the only part that needs a network connection.

    python -m pipelines.eda_report --database data/natality.duckdb --out runs/reports/eda.html
"""
from __future__ import annotations

import argparse
import datetime
import io
import logging
import math
import os
import pathlib
import re
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import duckdb
import jinja2
import markupsafe
import pandas as pd

from modules import features
from warehouse.sql import BIGQUERY_TABLE, LOCAL_TABLE, to_duckdb

logger = logging.getLogger(__name__)

DEFAULT_TITLE = "Babyweight: exploratory analysis of the US natality data"
# The course analyses births after 2000 only, as its training query does.
YEAR_FILTER = "year > 2000"
# Counts spanning more than this ratio (max / min) get a log y axis, or the rare values vanish.
LOG_SCALE_RATIO = 100.0
STATISTICS_SPLITS = ("train", "eval")
STATISTICS_FILE = "FeatureStats.pb"

# One template for every feature: the course's analysis, in BigQuery Standard SQL.
FEATURE_QUERY_TEMPLATE = """SELECT
  {column},
  COUNT(1) AS num_babies,
  AVG(weight_pounds) AS avg_wt
FROM
  `{table}`
WHERE
  {year_filter}
GROUP BY
  {column}
ORDER BY
  {column}"""

SUMMARY_QUERY = f"""SELECT
  COUNT(1) AS total_rows,
  COUNTIF({YEAR_FILTER}) AS rows_kept,
  MIN(year) AS first_year,
  MAX(year) AS last_year,
  AVG(IF({YEAR_FILTER}, weight_pounds, NULL)) AS mean_wt,
  STDDEV(IF({YEAR_FILTER}, weight_pounds, NULL)) AS std_wt
FROM
  `{BIGQUERY_TABLE}`"""


def feature_query(feature_name: str) -> str:
    """The BigQuery statement for one feature; the name is checked against the declaration."""
    column = features.by_name(feature_name).name
    return FEATURE_QUERY_TEMPLATE.format(column=column, table=BIGQUERY_TABLE,
                                         year_filter=YEAR_FILTER)


def feature_summaries(connection: duckdb.DuckDBPyConnection) -> Dict[str, pd.DataFrame]:
    """Feature name -> rows (value, num_babies, avg_wt), one per value, NULL as its own value.

    Run on the warehouse rather than in pandas so the real table never has to fit in memory.
    """
    result = {}
    for name in features.FEATURE_NAMES:
        frame = connection.execute(to_duckdb(feature_query(name))).df()
        frame = frame.rename(columns={name: "value"})[["value", "num_babies", "avg_wt"]]
        frame["num_babies"] = frame["num_babies"].astype("int64")
        frame["avg_wt"] = frame["avg_wt"].astype("float64")
        result[name] = frame.reset_index(drop=True)
    return result


def dataset_summary(connection: duckdb.DuckDBPyConnection) -> Dict[str, Any]:
    """Total rows, rows passing the year filter, their years, and the weight's mean and std."""
    cursor = connection.execute(to_duckdb(SUMMARY_QUERY))
    columns = [d[0] for d in cursor.description]
    return dict(zip(columns, cursor.fetchone()))


def describe_source(connection: duckdb.DuckDBPyConnection) -> str:
    """Where `natality` comes from on this connection: a database file, or a view of exports."""
    view = connection.execute(
        "SELECT sql FROM duckdb_views() WHERE view_name = ? AND NOT internal", [LOCAL_TABLE]
    ).fetchone()
    if view:
        return f"DuckDB view {LOCAL_TABLE}: {view[0].strip().rstrip(';')}"
    row = connection.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    where = row[0] if row and row[0] else "an in-memory database"
    return f"DuckDB table {LOCAL_TABLE} in {where}"


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


def svg_of_figure(figure: Any, label: str, id_prefix: str) -> str:
    """The figure as an <svg> element to paste into HTML: no XML prolog or metadata, sized by CSS.

    Element ids get `id_prefix`, so several charts on one page never share an id; with a fixed
    hash salt the same data gives byte-identical charts.
    """
    import matplotlib

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
    axes.grid(axis="y", alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
    return (svg_of_figure(figure, f"{y_label} by {feature_name}", f"{feature_name}-{column}"),
            axes.get_yscale())


def statistics_html(statistics_uri: str) -> str:
    """TFDV's Facets view of a StatisticsGen artifact's train split against its eval split."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
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


FACETS_FILE_SUFFIX = "_facets.html"


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


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
         max-width: 1100px; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
  h1 { font-size: 1.6rem; margin-bottom: .2rem; }
  h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
  .meta { color: #666; font-size: .9rem; margin-top: 0; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr));
            gap: 1rem; }
  figure.chart { margin: 0; }
  figure.chart svg { width: 100%; height: auto; }
  figcaption { font-size: .85rem; color: #555; text-align: center; }
  table { border-collapse: collapse; font-size: .9rem; margin: .6rem 0; }
  th, td { padding: .2rem .7rem; border-bottom: 1px solid #eee; text-align: left; }
  th { background: #f5f5f5; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .scroll { max-height: 22rem; overflow-y: auto; display: inline-block; }
  details pre { background: #f7f7f7; padding: .6rem; overflow-x: auto; font-size: .8rem; }
  .note { color: #555; font-size: .9rem; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">Data: <code>{{ bigquery_table }}</code>, read from {{ source }}<br>
Generated {{ generated }}</p>

<h2>Summary</h2>
<table class="summary">
  <tr><th>Rows in the table</th><td class="num">{{ "{:,}".format(summary.total_rows) }}</td></tr>
  <tr><th>Years</th><td class="num">{{ summary.first_year }}&ndash;{{ summary.last_year }}</td></tr>
  <tr><th>Rows with {{ year_filter }} (analysed below)</th>
      <td class="num">{{ "{:,}".format(summary.rows_kept) }}</td></tr>
  <tr><th>Mean weight (pounds)</th><td class="num">{{ fmt(summary.mean_wt) }}</td></tr>
  <tr><th>Std of weight (pounds)</th><td class="num">{{ fmt(summary.std_wt) }}</td></tr>
</table>
<details><summary>SQL (BigQuery)</summary><pre>{{ summary_sql }}</pre></details>

{% for f in features %}
<section class="feature" id="feature-{{ f.name }}">
<h2>{{ f.name }}</h2>
<p class="note">{{ f.description }}
  {%- if f.nulls %} {{ "{:,}".format(f.nulls) }} rows have no value; the line charts leave them out.{% endif %}</p>
<div class="charts">
{% for c in f.charts %}
  <figure class="chart" data-feature="{{ f.name }}" data-chart="{{ c.column }}" data-yscale="{{ c.yscale }}">
    {{ c.svg }}
    <figcaption>{{ c.caption }}{% if c.yscale == "log" %} (log scale){% endif %}</figcaption>
  </figure>
{% endfor %}
</div>
<div class="scroll">
<table class="values" data-feature="{{ f.name }}">
  <thead><tr><th>{{ f.name }}</th><th class="num">num_babies</th><th class="num">avg_wt</th></tr></thead>
  <tbody>
  {% for row in f.rows %}
    <tr><td>{{ row.label }}</td><td class="num">{{ row.num_babies }}</td><td class="num">{{ row.avg_wt }}</td></tr>
  {% endfor %}
  </tbody>
</table>
</div>
<details><summary>SQL (BigQuery)</summary><pre>{{ f.sql }}</pre></details>
</section>
{% endfor %}

<h2 id="statistics">Statistics: train vs eval</h2>
{% if statistics %}
<p class="note">TFDV statistics of the StatisticsGen output <code>{{ statistics_uri }}</code>, per
feature and split.</p>
{% for f in statistics %}
<table class="split-statistics" data-feature="{{ f.name }}">
  <thead><tr><th>{{ f.name }}</th><th>type</th><th class="num">examples</th><th class="num">missing</th>
    {% if f.rows[0].unique %}<th class="num">unique</th><th>most frequent</th>{% else %}<th class="num">min</th><th class="num">max</th><th class="num">mean</th><th class="num">std</th>{% endif %}</tr></thead>
  <tbody>{% for r in f.rows %}<tr><td>{{ r.split }}</td><td>{{ r.type }}</td><td class="num">{{ r.examples }}</td><td class="num">{{ r.missing }}</td>
    {% if f.rows[0].unique %}<td class="num">{{ r.unique }}</td><td>{{ r.top }}</td>{% else %}<td class="num">{{ r.min }}</td><td class="num">{{ r.max }}</td><td class="num">{{ r.mean }}</td><td class="num">{{ r.std }}</td>{% endif %}</tr>{% endfor %}</tbody>
</table>
{% endfor %}
<p class="note" id="facets-link">Optional extra: <a href="{{ facets_href }}">TFDV's interactive Facets view</a>
of the same statistics (it needs a network connection: it loads Facets from the web).</p>
{% else %}
<p class="note">No statistics given. Pass <code>--statistics-uri</code> with a StatisticsGen output
directory (holding <code>Split-train/FeatureStats.pb</code> and <code>Split-eval/FeatureStats.pb</code>)
to compare the splits here; the interactive statistics view needs a network connection.</p>
{% endif %}
</body>
</html>
"""


def _fmt(value: Optional[float], digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _feature_context(name: str, frame: pd.DataFrame) -> Dict[str, Any]:
    """What the template shows for one feature: charts, table rows, SQL."""
    charts = []
    for column, caption in (("num_babies", f"Number of babies by {name}"),
                            ("avg_wt", f"Mean weight (pounds) by {name}")):
        svg, yscale = render_chart(name, frame, column)
        charts.append({"column": column, "caption": caption, "yscale": yscale,
                       "svg": markupsafe.Markup(svg)})
    rows: List[Dict[str, str]] = [
        {"label": value_label(name, r.value), "num_babies": f"{int(r.num_babies):,}",
         "avg_wt": _fmt(r.avg_wt)}
        for r in frame.itertuples(index=False)
    ]
    return {
        "name": name,
        "description": features.by_name(name).description,
        "nulls": int(frame.loc[frame["value"].isna(), "num_babies"].sum()),
        "charts": charts,
        "rows": rows,
        "sql": feature_query(name),
    }


def write_atomically(out_path: pathlib.Path, text: str) -> None:
    """Temp file in the same directory, then os.replace: a reader never sees half a report."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide the report from others
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def build_report(
    connection: duckdb.DuckDBPyConnection,
    out_path: pathlib.Path,
    statistics_uri: Optional[str] = None,
    title: str = DEFAULT_TITLE,
    source: Optional[str] = None,
) -> pathlib.Path:
    """Writes the EDA report to `out_path` and returns it.

    `statistics_uri` (a StatisticsGen output directory) adds TFDV's train-vs-eval view;
    `source` overrides the description of where the data came from.
    """
    out_path = pathlib.Path(out_path)
    facets = statistics_html(statistics_uri) if statistics_uri else None  # checks the files
    summaries = feature_summaries(connection)
    summary = dataset_summary(connection)
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(_TEMPLATE)
    html = template.render(
        title=title,
        bigquery_table=BIGQUERY_TABLE,
        source=source or describe_source(connection),
        generated=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        summary=summary,
        summary_sql=SUMMARY_QUERY,
        year_filter=YEAR_FILTER,
        fmt=_fmt,
        features=[_feature_context(name, frame) for name, frame in summaries.items()],
        statistics=statistics_rows(statistics_uri) if statistics_uri else None,
        statistics_uri=statistics_uri,
        facets_href=out_path.stem + FACETS_FILE_SUFFIX,
    )
    if facets is not None:  # the online-only view lives in its own page, never a blank section
        write_atomically(out_path.with_name(out_path.stem + FACETS_FILE_SUFFIX),
                         f"<!DOCTYPE html><meta charset='utf-8'><title>{markupsafe.escape(title)}"
                         f": Facets</title>{facets}")
    write_atomically(out_path, html)
    return out_path


def _parser() -> argparse.ArgumentParser:
    from pipelines.config import PipelineConfig, WarehouseConfig

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.eda_report",
        description="Write the exploratory analysis of the natality data as one self-contained\n"
                    "HTML file: rows and mean weight per value of each feature (computed by SQL\n"
                    "on the warehouse), charts, tables, and optionally TFDV's train-vs-eval\n"
                    "statistics view.",
        epilog="examples:\n"
               "  python -m pipelines.eda_report --database data/natality.duckdb "
               "--out runs/reports/eda.html\n"
               "  python -m pipelines.eda_report --source 'exports/natality-*.parquet' \\\n"
               "      --statistics-uri runs/pipeline_root/StatisticsGen/statistics/<id> "
               "--out runs/reports/eda.html\n"
               "Only the linked Facets page needs a network connection (it loads Facets).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--database", type=pathlib.Path, metavar="FILE",
                        default=WarehouseConfig().database,
                        help="DuckDB file holding the natality table (default: %(default)s).")
    parser.add_argument("--source", default=None, metavar="FILES",
                        help="Analyse your own export of the natality table instead: CSV or "
                             "Parquet file or glob (e.g. 'exports/natality-*.parquet').")
    parser.add_argument("--statistics-uri", default=None, metavar="DIR",
                        help="A StatisticsGen output directory (with Split-train/ and "
                             "Split-eval/FeatureStats.pb) to add TFDV's statistics view.")
    parser.add_argument("--out", type=pathlib.Path, metavar="HTML",
                        default=PipelineConfig().reports_dir / "eda.html",
                        help="Where to write the HTML report (default: %(default)s).")
    parser.add_argument("--title", default=DEFAULT_TITLE, help="The report's title.")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from warehouse.engine import connect

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        connection = connect(args.database, args.source)
    except (FileNotFoundError, ValueError) as error:  # no warehouse, or --source not csv/parquet
        logger.error("%s", error)
        return 2
    try:
        path = build_report(connection, args.out, args.statistics_uri, args.title)
    except FileNotFoundError as error:  # --statistics-uri without the two splits' statistics
        logger.error("%s", error)
        return 2
    finally:
        connection.close()
    logger.info("EDA report written to %s (open %s in a browser)", path,
                path.resolve().as_uri())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
