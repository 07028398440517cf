-- The spans of the natality table: one row per month of births (span = year * 100 + month),
-- with the figures that change when that month's rows change. BigQuery Standard SQL, run as
-- written on BigQuery and translated to DuckDB by sqlglot locally (warehouse/spans.py), like
-- babyweight.sql. ExampleGen's driver runs it before each run: a new month, or new or changed
-- rows in a month, give a new fingerprint, so ExampleGen runs again instead of reusing its cache.
--
-- Only exact integer sums: a floating-point SUM may differ in its last bits from one BigQuery
-- run to the next, and the fingerprint would then change with no new data.
SELECT
  year * 100 + month AS span,
  COUNT(*) AS row_count,
  SUM(CAST(ROUND(IFNULL(weight_pounds, 0) * 1000) AS INT64)) AS weight_milli_pounds,
  SUM(IFNULL(mother_age, 0)) AS mother_age_sum,
  SUM(IFNULL(gestation_weeks, 0)) AS gestation_weeks_sum,
  SUM(IFNULL(plurality, 0)) AS plurality_sum,
  COUNTIF(is_male) AS male_count
FROM
  `bigquery-public-data.samples.natality`
GROUP BY
  span
ORDER BY
  span
