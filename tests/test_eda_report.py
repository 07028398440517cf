"""The EDA report: its SQL numbers agree with pandas on the same rows, and the page has them all."""
from __future__ import annotations

import html.parser
import pathlib
import re
from typing import Dict, List

import duckdb
import numpy as np
import pandas as pd
import pytest


from modules import features  # noqa: E402
from tests import unreadable_data
from tests.tolerances import EPS64, mean_rel, std_rel
from reports import eda, eda_queries  # noqa: E402

N_ROWS = 3000
OLD_ROWS = 300
# Only the year <= 2000 rows have this mother_age, so seeing it means the filter leaked.
OLD_ONLY_AGE = 59


def _natality_frame(seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = N_ROWS + OLD_ROWS
    plurality = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.96, 0.03, 0.007, 0.002, 0.001])
    plurality[:5] = [1, 2, 3, 4, 5]  # every value present among the recent rows
    frame = pd.DataFrame({
        "year": np.concatenate([rng.integers(2001, 2009, N_ROWS),
                                rng.integers(1969, 2001, OLD_ROWS)]),
        "month": rng.integers(1, 13, n),
        "is_male": rng.random(n) < 0.51,
        "mother_age": np.concatenate([rng.integers(15, 46, N_ROWS),
                                      np.full(OLD_ROWS, OLD_ONLY_AGE)]),
        "plurality": plurality,
        "gestation_weeks": rng.integers(28, 44, n),
        "weight_pounds": rng.normal(7.3, 1.2, n).round(4),
    })
    frame = frame.astype({"year": "int64", "month": "int64", "mother_age": "int64",
                          "plurality": "int64", "gestation_weeks": "int64"})
    gestation = frame["gestation_weeks"].astype("Int64")
    gestation[10:15] = pd.NA  # unknown gestation must stay a group of its own
    frame["gestation_weeks"] = gestation
    return frame


@pytest.fixture(scope="module")
def natality(tmp_path_factory: pytest.TempPathFactory):
    frame = _natality_frame()
    path = tmp_path_factory.mktemp("warehouse") / "natality.duckdb"
    connection = duckdb.connect(str(path))
    connection.execute(
        "CREATE TABLE natality (year BIGINT, month BIGINT, is_male BOOLEAN, mother_age BIGINT, "
        "plurality BIGINT, gestation_weeks BIGINT, weight_pounds DOUBLE)")
    connection.register("frame_view", frame)
    connection.execute("INSERT INTO natality SELECT * FROM frame_view")
    connection.unregister("frame_view")
    yield connection, frame
    connection.close()


@pytest.fixture(scope="module")
def report_html(natality, tmp_path_factory: pytest.TempPathFactory) -> str:
    connection, _ = natality
    out = tmp_path_factory.mktemp("reports") / "sub" / "eda.html"
    assert eda.build_report(connection, out) == out
    assert not [p for p in out.parent.iterdir() if p.name != "eda.html"], "temp file left behind"
    return out.read_text()


def _expected(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    recent = frame[frame["year"] > 2000]
    grouped = recent.groupby(name, dropna=False)["weight_pounds"].agg(["count", "mean"])
    return grouped.reset_index().rename(
        columns={name: "value", "count": "num_babies", "mean": "avg_wt"})


def _key(value) -> object:
    return "NULL" if pd.isna(value) else (value.item() if hasattr(value, "item") else value)


def test_feature_summaries_match_pandas(natality):
    connection, frame = natality
    summaries = eda_queries.feature_summaries(connection)
    assert list(summaries) == list(features.FEATURE_NAMES)
    for name, got in summaries.items():
        assert list(got.columns) == ["value", "num_babies", "avg_wt"]
        expected = _expected(frame, name)
        got_by_value = {_key(r.value): (r.num_babies, r.avg_wt) for r in got.itertuples()}
        want_by_value = {_key(r.value): (r.num_babies, r.avg_wt) for r in expected.itertuples()}
        assert set(got_by_value) == set(want_by_value), name
        for value, (count, mean) in want_by_value.items():
            assert got_by_value[value][0] == count, (name, value)
            # DuckDB's AVG and pandas' mean: float64 sums of the same positive weights.
            assert got_by_value[value][1] == pytest.approx(
                mean, rel=mean_rel(count, EPS64), abs=0), (name, value)
    assert "NULL" in {_key(v) for v in summaries["gestation_weeks"]["value"]}


def test_rows_up_to_2000_are_excluded(natality):
    connection, frame = natality
    summaries = eda_queries.feature_summaries(connection)
    assert OLD_ONLY_AGE not in set(summaries["mother_age"]["value"].tolist())
    for got in summaries.values():
        assert got["num_babies"].sum() == int((frame["year"] > 2000).sum())
    summary = eda_queries.dataset_summary(connection)
    recent = frame.loc[frame["year"] > 2000, "weight_pounds"]
    assert summary["total_rows"] == len(frame)
    assert summary["rows_kept"] == len(recent)
    assert summary["mean_wt"] == pytest.approx(recent.mean(), rel=mean_rel(len(recent), EPS64))
    # STDDEV (DuckDB's updating algorithm) against pandas' two-pass std, both ddof 1.
    assert summary["std_wt"] == pytest.approx(
        recent.std(), rel=std_rel(len(recent), recent.mean(), recent.std(), EPS64))


def test_queries_are_bigquery_sql():
    for name in features.FEATURE_NAMES:
        sql = eda_queries.feature_query(name)
        assert "`bigquery-public-data.samples.natality`" in sql
        assert f"GROUP BY\n  {name}" in sql
    with pytest.raises(KeyError):
        eda_queries.feature_query("weight_pounds; DROP TABLE natality")


class _Page(html.parser.HTMLParser):
    """Collects the charts (figure attributes, svg count) and the value tables' cells."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: List[Dict[str, str]] = []
        self.svgs_in_figures = 0
        self.tables: Dict[str, List[List[str]]] = {}
        self._in_figure = False
        self._table = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self.figures.append(attrs)
            self._in_figure = True
        elif tag == "svg" and self._in_figure:
            self.svgs_in_figures += 1
        elif tag == "table" and "values" in attrs.get("class", ""):
            self._table = self.tables.setdefault(attrs["data-feature"], [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag == "td" and self._table is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "figure":
            self._in_figure = False
        elif tag == "table":
            self._table = None
        elif tag == "td" and self._cell is not None:
            self._table[-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_report_has_a_chart_per_feature_and_the_table_values(natality, report_html):
    _, frame = natality
    page = _Page()
    page.feed(report_html)
    charts = {(f["data-feature"], f["data-chart"]): f for f in page.figures}
    assert set(charts) == {(name, column) for name in features.FEATURE_NAMES
                           for column in ("num_babies", "avg_wt")}
    assert page.svgs_in_figures == len(page.figures) == 2 * len(features.FEATURE_NAMES)
    assert charts[("plurality", "num_babies")]["data-yscale"] == "log"
    assert charts[("is_male", "num_babies")]["data-yscale"] == "linear"
    assert charts[("plurality", "avg_wt")]["data-yscale"] == "linear"

    for name in features.FEATURE_NAMES:
        expected = _expected(frame, name)
        rows = [r for r in page.tables[name] if r]
        assert len(rows) == len(expected)
        cells = {(row[1], row[2]) for row in rows}
        for r in expected.itertuples():
            assert (f"{r.num_babies:,}", f"{r.avg_wt:.3f}") in cells, (name, r.value)
    assert ["Twins(2)"] == [r[0] for r in page.tables["plurality"] if r and r[0] == "Twins(2)"]

    assert "Generated " in report_html and "bigquery-public-data.samples.natality" in report_html
    assert "<?xml" not in report_html  # SVG prologs stripped
    assert not re.search(r'(src|href)="https?:', report_html)  # nothing loaded from the web
    ids = re.findall(r'\bid="([^"]+)"', report_html)
    assert len(ids) == len(set(ids)), "charts share element ids"
    for ref in re.findall(r'(?:url\(#|href="#)([^)"]+)', report_html):
        assert ref in ids, f"dangling reference #{ref}"
    assert "No statistics given" in report_html


def test_report_embeds_tfdv_statistics(natality, tmp_path: pathlib.Path):
    import tensorflow_data_validation as tfdv

    connection, frame = natality
    uri = tmp_path / "StatisticsGen" / "statistics" / "7"
    columns = ["mother_age", "weight_pounds"]
    for split, part in (("train", frame.iloc[:200]), ("eval", frame.iloc[200:260])):
        stats = tfdv.generate_statistics_from_dataframe(part[columns].astype("float64"))
        (uri / f"Split-{split}").mkdir(parents=True)
        (uri / f"Split-{split}" / "FeatureStats.pb").write_bytes(stats.SerializeToString())
    out = eda.build_report(connection, tmp_path / "eda.html", statistics_uri=str(uri),
                                  title="EDA <test>")
    text = out.read_text()
    # The page itself compares the splits offline; Facets is a separate, linked page.
    assert "facets-iframe" not in text and "<script" not in text
    assert 'data-feature="mother_age"' in text and "needs a network connection" in text
    facets = (tmp_path / f"eda{eda.FACETS_FILE_SUFFIX}").read_text()
    assert "facets-iframe" in facets and "<facets-overview" in facets
    assert f'href="eda{eda.FACETS_FILE_SUFFIX}"' in text
    assert "<title>EDA &lt;test&gt;</title>" in text  # autoescaped

    (uri / "Split-eval" / "FeatureStats.pb").unlink()
    with pytest.raises(FileNotFoundError, match="Split-eval"):
        eda.build_report(connection, tmp_path / "other.html", statistics_uri=str(uri))
    assert not (tmp_path / "other.html").exists()


def test_cli_writes_report(natality, tmp_path: pathlib.Path, caplog):
    _, frame = natality
    source = tmp_path / "natality.parquet"
    frame.to_parquet(source)
    out = tmp_path / "cli" / "eda.html"
    with caplog.at_level("INFO"):
        assert eda.main(["--source", str(source), "--out", str(out)]) == 0
    assert out.exists() and str(out) in caplog.text
    assert "DuckDB view natality" in out.read_text()
    assert eda.main(["--database", str(tmp_path / "missing.duckdb"),
                            "--out", str(tmp_path / "never.html")]) == 2
    assert not (tmp_path / "never.html").exists()


@pytest.mark.parametrize("case", sorted(unreadable_data.CASES))
def test_cli_names_unreadable_data_in_one_line(case, tmp_path: pathlib.Path, capsys):
    flags = unreadable_data.flags(case, tmp_path)
    assert eda.main(flags + ["--out", str(tmp_path / "eda.html")]) == 2
    unreadable_data.assert_named_in_one_line(capsys.readouterr().err, flags, case)
    assert not (tmp_path / "eda.html").exists()
