"""The course's exploratory analysis of the natality data, as one HTML file for a browser.

Per feature it runs the course's GROUP BY query on the raw table (rows and mean weight per
value, `reports.eda_queries`); the numbers become inline SVG charts (`reports.eda_charts`) and
tables. With a StatisticsGen run, a table per feature compares its train and eval statistics, and
TFDV's interactive Facets view of them is written as a separate linked page
(`reports.eda_statistics`), the only part that needs a network connection. The pipeline's
EdaReport component (pipelines/components/eda_report.py) calls `build_report` for every run.

    python -m reports.eda --database data/natality.duckdb --out runs/reports/eda.html
"""
from __future__ import annotations

import argparse
import datetime
import logging
import math
import pathlib
import sys
from typing import Any, Dict, List, Optional, Sequence

import duckdb
import jinja2
import markupsafe
import pandas as pd

from common.errors import WarehouseBusyError
from common.files import overwritten_input, write_atomically
from reports import EDA_TEMPLATE
from modules import features
from reports.eda_charts import render_chart, value_label
from reports.eda_queries import (SUMMARY_QUERY, YEAR_FILTER, dataset_summary, describe_source,
                                 feature_query, feature_summaries)
from reports.eda_statistics import FACETS_FILE_SUFFIX, statistics_html, statistics_rows
from warehouse.sql import BIGQUERY_TABLE

logger = logging.getLogger(__name__)

DEFAULT_TITLE = "Babyweight: exploratory analysis of the US natality data"


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
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(EDA_TEMPLATE.parent)),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    html = environment.get_template(EDA_TEMPLATE.name).render(
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
    from common.config import PipelineConfig, WarehouseConfig

    parser = argparse.ArgumentParser(
        prog="python -m reports.eda",
        description="Write the exploratory analysis of the natality data as one self-contained\n"
                    "HTML file: rows and mean weight per value of each feature (computed by SQL\n"
                    "on the warehouse), charts, tables, and optionally TFDV's train-vs-eval\n"
                    "statistics view.",
        epilog="examples:\n"
               "  python -m reports.eda --database data/natality.duckdb "
               "--out runs/reports/eda.html\n"
               "  python -m reports.eda --source 'exports/natality-*.parquet' \\\n"
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


def _fail(message: object, code: int = 2) -> int:
    """A failure the command expects: one line on stderr, exit 2 (the input's fault), or 1
    for a warehouse another process holds (no fault of the data: run again later)."""
    print(f"error: {str(message).splitlines()[0]}", file=sys.stderr)
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    from warehouse.engine import connect
    from warehouse.preflight import read_files, unmatched_source

    parser = _parser()
    args = parser.parse_args(argv)
    read = overwritten_input(args.out, args.database, sources=[args.source], listing=read_files)
    if read:
        parser.error(f"--out {args.out} is what it reads ({read}): writing the report would "
                     "replace it; give --out another path")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    problem = unmatched_source(args.source)
    if problem:
        return _fail(problem)
    label = f"--source {args.source}" if args.source else f"--database {args.database}"
    try:
        connection = connect(args.database, args.source)
    except (FileNotFoundError, ValueError) as error:  # no warehouse, or --source not csv/parquet
        return _fail(error)
    except WarehouseBusyError as error:  # `warehouse.months` appending, past the wait
        return _fail(error, code=1)
    except duckdb.Error as error:  # not a DuckDB file, or files DuckDB cannot read
        return _fail(f"cannot read the natality data at {label}: {error}")
    try:
        path = build_report(connection, args.out, args.statistics_uri, args.title)
    except FileNotFoundError as error:  # --statistics-uri without the two splits' statistics
        return _fail(error)
    except duckdb.Error as error:  # no natality table, or one without the columns the SQL reads
        return _fail(f"cannot analyse the natality data at {label}: {error}")
    finally:
        connection.close()
    logger.info("EDA report written to %s (open %s in a browser)", path,
                path.resolve().as_uri())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
