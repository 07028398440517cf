-- The babyweight training query: BigQuery Standard SQL, the one source of truth.
--
-- On Google Cloud BigQueryExampleGen runs this file as written. Locally the same file is
-- translated to DuckDB by sqlglot at run time (warehouse/sql.py), with the table name mapped to
-- the embedded warehouse. Splits and sampling wrap this query (warehouse/sql.py: split_query);
-- they never edit it.
--
-- is_male is spelled 'True' / 'False' / 'Unknown' from here on (CAST(is_male AS STRING) would
-- give 'true' / 'false' and fall out of the model's vocabulary).
-- The second half of the UNION ALL is the course's "no ultrasound" augmentation: the same births
-- with sex unknown and plurality known only as single or multiple.
WITH births AS (
  SELECT
    weight_pounds,
    CASE is_male WHEN TRUE THEN 'True' WHEN FALSE THEN 'False' ELSE 'Unknown' END AS is_male,
    mother_age,
    CASE plurality
      WHEN 1 THEN 'Single(1)'
      WHEN 2 THEN 'Twins(2)'
      WHEN 3 THEN 'Triplets(3)'
      WHEN 4 THEN 'Quadruplets(4)'
      WHEN 5 THEN 'Quintuplets(5)'
      -- Any other count keeps its number, so that data validation reports it as a new value.
      ELSE CAST(plurality AS STRING)
    END AS plurality,
    gestation_weeks,
    FARM_FINGERPRINT(CONCAT(CAST(year AS STRING), CAST(month AS STRING))) AS hashmonth
  FROM
    `bigquery-public-data.samples.natality`
  WHERE
    year > 2000
    AND weight_pounds > 0
    AND mother_age > 0
    AND plurality > 0
    AND gestation_weeks > 0
)
SELECT
  weight_pounds,
  is_male,
  mother_age,
  plurality,
  gestation_weeks,
  hashmonth
FROM
  births
UNION ALL
SELECT
  weight_pounds,
  'Unknown' AS is_male,
  mother_age,
  IF(plurality = 'Single(1)', plurality, 'Multiple(2+)') AS plurality,
  gestation_weeks,
  hashmonth
FROM
  births
