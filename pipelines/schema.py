"""The curated schema, built from the feature declaration; and a command to infer one from data.

`schema/schema.pbtxt` is written by `python -m pipelines.schema write` from modules/features.py,
and a test keeps the committed file equal to what the declaration gives. To review what the data
really looks like, `python -m pipelines.schema infer` runs TFDV's inference on the warehouse query
and writes a schema beside it for a person to compare and curate.
"""
from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from typing import Optional

from tensorflow_metadata.proto.v0 import schema_pb2

from common.config import PROJECT_ROOT
from modules import features
# The file, its environments and its loader are the contract's: the monitoring reads them too.
from modules.contract import SCHEMA_FILE
from modules.contract import SERVING_ENVIRONMENT as SERVING
from modules.contract import TRAINING_ENVIRONMENT as TRAINING
from modules.contract import load_schema as load  # noqa: F401 - pipelines.schema.load

# Every split must hold at least this many examples: an RMSE measured on n examples is uncertain
# by about RMSE / sqrt(2n), 7% at 100, already more than the margins the Evaluator gates on.
# TFDV 1.16 skips the check for a split with zero examples; locally DuckDBExampleGen stops on
# an empty split itself.
MIN_EXAMPLES_PER_SPLIT = 100


def _scalar(feature: schema_pb2.Feature) -> None:
    feature.presence.min_fraction = 1.0
    feature.presence.min_count = 1
    feature.shape.dim.add().size = 1


def curated_schema() -> schema_pb2.Schema:
    """The schema the pipeline validates data against, derived from `modules.features`."""
    schema = schema_pb2.Schema()
    schema.default_environment.extend([TRAINING, SERVING])
    label = schema.feature.add(name=features.LABEL_KEY, type=schema_pb2.FLOAT)
    _scalar(label)
    label.float_domain.min = 0.0
    label.not_in_environment.append(SERVING)
    for declared in features.FEATURES:
        feature = schema.feature.add(name=declared.name)
        _scalar(feature)
        if isinstance(declared, features.CategoricalFeature):
            feature.type = schema_pb2.BYTES
            feature.domain = declared.name
            domain = schema.string_domain.add(name=declared.name)
            domain.value.extend(declared.vocabulary)
            feature.skew_comparator.infinity_norm.threshold = declared.skew_threshold
            feature.drift_comparator.infinity_norm.threshold = declared.drift_threshold
        else:
            feature.type = schema_pb2.INT
            feature.int_domain.min = declared.min_value
            feature.int_domain.max = declared.max_value
            feature.skew_comparator.jensen_shannon_divergence.threshold = declared.skew_threshold
            feature.drift_comparator.jensen_shannon_divergence.threshold = (
                declared.drift_threshold)
    split_key = schema.feature.add(name=features.SPLIT_KEY, type=schema_pb2.INT)
    _scalar(split_key)
    split_key.not_in_environment.append(SERVING)
    schema.dataset_constraints.min_examples_count = MIN_EXAMPLES_PER_SPLIT
    return schema


def render(schema: schema_pb2.Schema) -> str:
    from google.protobuf import text_format

    header = ("# Generated from modules/features.py by `python -m pipelines.schema write`.\n"
              "# Edit the declaration, not this file; tests/test_schema.py keeps them equal.\n")
    return header + text_format.MessageToString(schema)


def infer_from_warehouse(database: pathlib.Path, source: Optional[str],
                         out: pathlib.Path) -> schema_pb2.Schema:
    """TFDV's inferred schema for the query's train split, for a person to review."""
    import tensorflow_data_validation as tfdv

    from pipelines.config import DataConfig
    from warehouse import engine, preflight, sql

    data = DataConfig()
    train_range = data.split_buckets()["train"]
    query = sql.to_duckdb(sql.split_query(sql.base_query(), data.hash_buckets, train_range))
    problem = preflight.unmatched_source(source)
    if problem:
        raise FileNotFoundError(problem)
    connection = engine.connect(database, source)
    try:
        frame = connection.execute(query).df()
    finally:
        connection.close()
    stats = tfdv.generate_statistics_from_dataframe(frame)
    schema = tfdv.infer_schema(stats)
    out.parent.mkdir(parents=True, exist_ok=True)
    tfdv.write_schema_text(schema, str(out))
    return schema


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.schema", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write", help="write schema/schema.pbtxt from modules/features.py")
    write.add_argument("--out", type=pathlib.Path, default=SCHEMA_FILE)
    infer = sub.add_parser("infer", help="infer a schema from the warehouse for review")
    infer.add_argument("--database", type=pathlib.Path,
                       default=PROJECT_ROOT / "data" / "natality.duckdb")
    infer.add_argument("--source", default=None, help="CSV/Parquet export instead of --database")
    infer.add_argument("--out", type=pathlib.Path,
                       default=PROJECT_ROOT / "runs" / "inferred_schema.pbtxt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    import duckdb

    from common.errors import WarehouseBusyError

    try:
        if args.command == "write":
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(render(curated_schema()))
            logging.info("wrote %s", args.out)
        else:
            infer_from_warehouse(args.database, args.source, args.out)
            logging.info("wrote the inferred schema to %s; compare it with %s", args.out,
                         SCHEMA_FILE)
    except (OSError, ValueError) as error:  # no warehouse, no such file, --out not writable
        return _fail(error)
    except WarehouseBusyError as error:  # `warehouse.months` appending: no fault of the data
        return _fail(error, code=1)
    except duckdb.Error as error:  # not a DuckDB file, or data without the query's columns
        label = f"--source {args.source}" if args.source else f"--database {args.database}"
        return _fail(f"cannot read the natality data at {label}: {error}")
    return 0


def _fail(message: object, code: int = 2) -> int:
    """A failure the command expects: one line on stderr, exit 2 (the input's fault), or 1
    for a warehouse another process holds (run again when it has finished)."""
    print(f"error: {str(message).splitlines()[0]}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
