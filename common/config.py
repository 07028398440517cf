"""Typed settings shared by the pipeline, the serving commands and the warehouse tools.

Each setting is declared once, as a dataclass field with a default and a help text; every command
turns the fields into argparse flags (`add_flags` / `from_flags`), so a flag can never drift from
the value the code reads. The settings here (where the data, the run's outputs and the pushed
models live, how rows become splits) are read on both sides of a push, so they live outside
`pipelines/`; the training-only settings are `pipelines.config`.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import pathlib
import sys
from typing import (Any, Dict, NoReturn, Optional, Tuple, Type, TypeVar,
                    get_type_hints)

T = TypeVar("T")

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
PIPELINE_NAME = "babyweight"
# Raw rows from which auto runs Beam on every core (two cores or more), in multi_threading: the
# same split of ExampleGen's shards between the workers as multi_processing, at in_memory's CPU
# seconds over the whole pipeline (benchmarks/scale.py). multi_processing's workers, forked with
# the libraries imported (pipelines/speedups/forked_workers.py), no longer pay the imports, but
# are measured for StatisticsGen and Transform only (benchmarks/beam_modes.py), on a loaded
# machine. The size is where the per-row and fixed CPU costs measured before that put even
# multi_processing past in_memory for StatisticsGen and Transform together (README, "Scale");
# below it, whether a second worker gains on an idle machine is not yet measured, so auto keeps
# in_memory, which already overlaps reading with Beam's thread.
PARALLEL_MIN_ROWS = 10_000_000
# The keys of DataConfig.split_layout: the span driver checks a selection of months against it,
# and the export records it, so batch prediction's --split keeps the split a version was
# trained with.
SPLIT_BUCKETS_KEY = "split_buckets"
HASH_BUCKETS_KEY = "hash_buckets"


def setting(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A dataclass field that also carries its --flag help text, and optionally `minimum`,
    `above` (exclusive) and `maximum`, the bounds `from_flags` holds a given value to (a float
    flag is always finite)."""
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


@dataclasses.dataclass(frozen=True)
class WarehouseConfig:
    """Where the natality table lives and how the embedded one is generated."""

    database: pathlib.Path = setting(
        PROJECT_ROOT / "data" / "natality.duckdb",
        "DuckDB file holding the natality table (generated on first use if missing).",
    )
    source: Optional[str] = setting(
        None,
        "Your own export of the natality table: a CSV or Parquet file or glob "
        "(e.g. 'exports/natality-*.parquet'). Replaces the generated table; the query is "
        "unchanged.",
    )
    # None: not given (a new file gets the generator's defaults; an existing one is used as is).
    generate_rows: Optional[int] = setting(
        None, "Rows of synthetic natality data to generate when the --database file is missing "
        "(default 100000). Given, an existing file generated otherwise is refused, never "
        "silently used; months appended by warehouse.months are not generated rows.", minimum=1)
    seed: Optional[int] = setting(
        None, "Seed of the synthetic data generator (default 42); as --generate-rows for an "
        "existing file.", minimum=0)


def check_month(value: int, flag: str) -> None:
    """Raises ValueError unless `value` is a month written YYYYMM: spans are months of births,
    and a span like 201013 would be a month that no calendar has."""
    if not (100_001 <= value <= 999_912 and 1 <= value % 100 <= 12):
        raise ValueError(f"{flag} must be a month written YYYYMM (e.g. 200812), got {value}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How the query's rows become splits: by ABS(MOD(hashmonth, buckets)), as the course does."""

    hash_buckets: int = setting(10, "Buckets of ABS(MOD(hashmonth, N)) that the splits share.")
    train_buckets: int = setting(8, "Buckets [0, train) go to the train split.")
    eval_buckets: int = setting(1, "The next buckets go to eval; the rest to test.")
    sample_per_mille: int = setting(
        1000,
        "Keep this many rows in 1000, chosen by a fingerprint of each row, for a small "
        "representative dataset (1000 keeps everything).",
    )

    first_span: int = setting(
        0, "Oldest span (month of births, YYYYMM) a run reads; 0 = the oldest in the "
        "warehouse. See README 'How spans work'.")
    last_span: int = setting(
        0, "Newest span (YYYYMM) a run reads; 0 = the newest in the warehouse, found at run "
        "time, so a run reads months added since the last one.")
    num_spans: int = setting(
        0, "Read only the newest N spans (from --first-span on): a moving window of recent "
        "months; 0 = every span, so training data grows with each new month.")

    def span_range(self) -> Tuple[int, int, int]:
        """(first, last, newest N), validated; zeros are unbounded."""
        for value, flag in ((self.first_span, "--first-span"), (self.last_span, "--last-span")):
            if value:
                check_month(value, flag)
        if self.num_spans < 0:
            raise ValueError(f"--num-spans must be 0 (every span) or more, got {self.num_spans}")
        if self.last_span and self.num_spans:
            raise ValueError("--num-spans counts back from the newest span; with --last-span "
                             "give --first-span instead")
        if self.last_span and self.last_span < self.first_span:
            raise ValueError(f"--last-span {self.last_span} is before --first-span "
                             f"{self.first_span}")
        return self.first_span, self.last_span, self.num_spans

    def split_buckets(self) -> Dict[str, Tuple[int, int]]:
        """Split name -> half-open bucket range [lo, hi)."""
        if not 0 < self.train_buckets < self.train_buckets + self.eval_buckets <= self.hash_buckets:
            raise ValueError(
                f"need 0 < train_buckets ({self.train_buckets}) < train+eval "
                f"({self.train_buckets + self.eval_buckets}) <= hash_buckets ({self.hash_buckets})"
            )
        if not 0 < self.sample_per_mille <= 1000:
            raise ValueError(f"sample_per_mille must be in 1..1000, got {self.sample_per_mille}")
        end_eval = self.train_buckets + self.eval_buckets
        splits = {"train": (0, self.train_buckets), "eval": (self.train_buckets, end_eval)}
        if end_eval < self.hash_buckets:
            splits["test"] = (end_eval, self.hash_buckets)
        return splits

    def selection_split(self) -> str:
        """The split the Trainer and the Tuner validate on (early stopping's best epoch, the
        best trial): the test split, so that the eval split the Evaluator gates on took no
        part in choosing the model and its RMSE is not biased low by the choice. Without a
        test split (train and eval take every bucket), the eval split, and the gate then
        judges the split the model was chosen on."""
        return "test" if "test" in self.split_buckets() else "eval"

    def split_layout(self) -> Dict[str, Any]:
        """The splits as JSON: {hash_buckets: N, split_buckets: {name: [lo, hi]}}."""
        return {SPLIT_BUCKETS_KEY: {name: list(rng) for name, rng in self.split_buckets().items()},
                HASH_BUCKETS_KEY: self.hash_buckets}


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Where a run keeps its artifacts, metadata and pushed models, and how Beam runs."""

    pipeline_root: pathlib.Path = setting(
        PROJECT_ROOT / "runs" / "pipeline_root", "Directory for the pipeline's artifacts."
    )
    metadata_path: pathlib.Path = setting(
        PROJECT_ROOT / "runs" / "metadata.sqlite", "ML Metadata store (SQLite file)."
    )
    serving_dir: pathlib.Path = setting(
        PROJECT_ROOT / "serving_model" / PIPELINE_NAME,
        "Pushed models land here as <serving_dir>/<version>/, the TF Serving layout.",
    )
    reports_dir: pathlib.Path = setting(
        PROJECT_ROOT / "runs" / "reports", "HTML reports written by each run."
    )
    enable_cache: bool = setting(True, "Reuse outputs of components whose inputs did not change.")
    beam_direct_running_mode: str = setting(
        "auto",
        "Beam DirectRunner mode: in_memory is fastest on small data; multi_threading and "
        "multi_processing use every core, multi_processing's workers taking seconds to start; "
        f"auto picks multi_threading from {PARALLEL_MIN_ROWS:,} raw rows, else in_memory, and "
        "logs which.",
        choices=("auto", "in_memory", "multi_threading", "multi_processing"),
    )
    beam_direct_num_workers: int = setting(
        1, "DirectRunner workers; 0 = one per core (for the multi_* modes; auto uses every "
        "core).", minimum=0)

    def direct_running_mode(self, rows: Optional[int]) -> Tuple[str, int]:
        """(mode, workers) for a run over `rows` raw rows (None: unknown): auto resolved."""
        mode, workers, _ = self.direct_running_choice(rows)
        return mode, workers

    def direct_running_choice(self, rows: Optional[int]) -> Tuple[str, int, str]:
        """(mode, workers, why) for a run over `rows` raw rows; `why` is for the run's log."""
        if self.beam_direct_running_mode != "auto":
            return (self.beam_direct_running_mode, self.beam_direct_num_workers,
                    "set by --beam-direct-running-mode")
        cores = os.cpu_count() or 1
        if cores < 2:
            return "in_memory", 1, "auto: one core, so no second worker to gain from"
        if rows is None:
            return "in_memory", 1, "auto: the data's size is unknown"
        if rows >= PARALLEL_MIN_ROWS:
            return ("multi_threading", cores,
                    f"auto: {rows:,} raw rows, at least the {PARALLEL_MIN_ROWS:,} from which a "
                    f"worker on every core pays; threads rather than processes, measured on "
                    f"the whole pipeline at in_memory's CPU, where worker processes (forked "
                    f"with the libraries imported) are measured for StatisticsGen and "
                    f"Transform only (benchmarks/results/beam_modes.md)")
        return ("in_memory", 1,
                f"auto: {rows:,} raw rows, below the {PARALLEL_MIN_ROWS:,} from which a worker "
                f"on every core is known to pay; in_memory already overlaps reading with "
                f"Beam's thread (benchmarks/results/beam_modes.md)")

    def beam_pipeline_args(self, rows: Optional[int] = None) -> Tuple[str, ...]:
        """Only the DirectRunner options that differ from Beam's defaults (in_memory, 1 worker).

        Why not always both: given any Beam argument, each TFX Beam component first builds an
        sdist of TFX itself for remote workers (seconds per component: the README's "Pipeline
        speed"), which a local run never uses.
        """
        mode, workers = self.direct_running_mode(rows)
        args = []
        if mode != "in_memory":
            args.append(f"--direct_running_mode={mode}")
        if workers != 1:
            args.append(f"--direct_num_workers={workers}")
        return tuple(args)


def flag_type(hint: Any) -> Any:
    """The argparse type for a field's type hint (Optional[X] -> X)."""
    args = getattr(hint, "__args__", None)
    if args and type(None) in args:
        hint = next(a for a in args if a is not type(None))
    return hint


def shown_default(value: Any) -> str:
    """A default as it would be typed after its flag: a tuple's values space-separated, an
    empty string as ''."""
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value) if value != "" else "''"


def add_flags(parser: argparse.ArgumentParser, cls: Type[Any], prefix: str = "") -> None:
    """Adds one --flag per field of the config dataclass `cls`.

    A Tuple[X, ...] field takes its values after the flag (`--sizes 1 2`; nargs "+" unless the
    field's metadata says otherwise). A None default means "not given", which the field's help
    explains, so it is not printed.
    """
    group = parser.add_argument_group(cls.__name__, (cls.__doc__ or "").strip().splitlines()[0])
    hints = get_type_hints(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + (prefix + field.name).replace("_", "-")
        hint = flag_type(hints[field.name])
        kwargs: Dict[str, Any] = {"dest": prefix + field.name, "default": field.default}
        help_text = field.metadata.get("help", "")
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif getattr(hint, "__origin__", None) is tuple:
            kwargs["type"] = hint.__args__[0]
            kwargs["nargs"] = field.metadata.get("nargs", "+")
        else:
            kwargs["type"] = hint
        for key in ("choices", "metavar"):  # what a flag's value is, for those that take one
            if hint is not bool and key in field.metadata:
                kwargs[key] = field.metadata[key]
        # BooleanOptionalAction prints the default itself.
        if hint is not bool and field.default is not None:
            help_text = f"{help_text} (default: {shown_default(field.default)})"
        kwargs["help"] = help_text
        group.add_argument(flag, **kwargs)


_COMMAND = "_command_name"  # where command_parser leaves its prog in the parsed flags


def command_parser(prog: str, description: Optional[str], *configs: Type[Any]
                   ) -> argparse.ArgumentParser:
    """A command's parser: its module docstring shown as written, one --flag per field of
    each config dataclass."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for cls in configs:
        add_flags(parser, cls)
    parser.set_defaults(**{_COMMAND: prog})  # from_flags' usage errors name it as argparse does
    return parser


def flag_problem(field: "dataclasses.Field[Any]", value: Any) -> Optional[str]:
    """What is wrong with a flag's value given its field's bounds, or None."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for one in values:
        if isinstance(one, bool) or not isinstance(one, (int, float)):
            continue
        if isinstance(one, float) and not math.isfinite(one):
            return f"must be a finite number, got {one}"
        low, high = field.metadata.get("minimum"), field.metadata.get("maximum")
        above = field.metadata.get("above")
        if low is not None and one < low:
            return f"must be at least {low}, got {one}"
        if above is not None and one <= above:
            return f"must be above {above}, got {one}"
        if high is not None and one > high:
            return f"must be at most {high}, got {one}"
    return None


def from_flags(cls: Type[T], args: argparse.Namespace, prefix: str = "") -> T:
    """Builds the config dataclass `cls` from parsed flags added by `add_flags`.

    A value out of its field's bounds, or one the config itself refuses (its __post_init__'s
    ValueError), is a usage error as argparse's own are: the message on stderr and exit 2,
    never a traceback.
    """
    values = {f.name: getattr(args, prefix + f.name) for f in dataclasses.fields(cls)}
    for field in dataclasses.fields(cls):
        problem = flag_problem(field, values[field.name])
        if problem:
            _usage_error(args, f"--{(prefix + field.name).replace('_', '-')} {problem}")
    try:
        # argparse gives a list for a Tuple field's values; the config keeps the declared tuple.
        return cls(**{name: tuple(v) if isinstance(v, list) else v
                      for name, v in values.items()})
    except ValueError as error:
        _usage_error(args, str(error))


def _usage_error(args: argparse.Namespace, message: str) -> NoReturn:
    """As argparse's `parser.error`: the command's name, the message, exit 2."""
    command = getattr(args, _COMMAND, None) or os.path.basename(sys.argv[0]) or "babyweight"
    print(f"{command}: error: {message}", file=sys.stderr)
    raise SystemExit(2)
