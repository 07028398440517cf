-- The spans of the natality table: one row per month of births (span = year * 100 + month),
-- with the figures that change when that month's rows change. BigQuery Standard SQL, run as
-- written on BigQuery and translated to DuckDB by sqlglot locally (warehouse/spans.py), like
-- babyweight.sql. ExampleGen's driver runs it before each run: a new month, or new or changed
-- rows in a month, give a new fingerprint, so ExampleGen runs again instead of reusing its cache.
--
-- rows_fingerprint sums a fingerprint of each row's values (NULL spelled apart from any
-- value), so any change to a row changes it, also one the sums below cannot see: a value set
-- to NULL, two rows' values swapped. It must read every column babyweight.sql reads: the
-- span driver refuses to run when it does not (warehouse/spans.py: unfingerprinted_columns).
-- Each row's part is reduced modulo a prime so that the sum never overflows INT64.
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
  COUNTIF(is_male) AS male_count,
  SUM(MOD(FARM_FINGERPRINT(CONCAT(
    IFNULL(CAST(weight_pounds AS STRING), 'NULL'), '|',
    IFNULL(CAST(is_male AS STRING), 'NULL'), '|',
    IFNULL(CAST(mother_age AS STRING), 'NULL'), '|',
    IFNULL(CAST(plurality AS STRING), 'NULL'), '|',
    IFNULL(CAST(gestation_weeks AS STRING), 'NULL'))), 1000000007)) AS rows_fingerprint
FROM
  `bigquery-public-data.samples.natality`
GROUP BY
  span
ORDER BY
  span
