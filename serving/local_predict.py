"""`python -m serving.local_predict`: predict from a JSON-lines file without a server.

The course's `gcloud ai-platform local predict --model-dir ... --json-instances ...`, for the
pushed model:

    .venv/bin/python -m serving.local_predict --model-dir serving_model/babyweight \\
        --json-instances instances.jsonl          # one instance object per line ('-' = stdin)

prints one JSON object per instance line, in order: {"weight_pounds": 7.68}. Each line is read
by the same rule as batch prediction's (serving.instances.decide): the model's spellings or the
natality table's own (plurality 1..5, is_male true/false), checked as the server checks them and
run through the same `serving_default` signature, so the answers are the server's. A bad line
does not stop the run: its place in the output holds {"line": N, "error": "..."}, stderr names
the line and the reason, and the command exits 2 when more lines were rejected than
--max-error-rate allows (by default, any). stderr ends with how many lines were read,
predicted and rejected.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import IO, Any, Iterator, List, Optional, Tuple


from common import logs  # noqa: E402
from common.config import command_parser, from_flags, setting  # noqa: E402
from modules import features  # noqa: E402
from serving import instances, validation  # noqa: E402
from serving.settings import PushedVersionConfig  # noqa: E402

EXIT_INVALID = instances.EXIT_REJECTED


@dataclasses.dataclass(frozen=True)
class LocalPredictConfig(PushedVersionConfig):
    """Which model version, which instances."""

    json_instances: Optional[str] = setting(
        None, "JSON-lines file, one instance object per line ('-' reads stdin). Required.")
    batch_size: int = setting(1000, "Instances per model call.", minimum=1)
    max_error_rate: float = setting(
        0.0, "Fraction of lines that may be rejected with exit code 0 (0 = none).", minimum=0.0,
        maximum=1.0)
    verbose: bool = setting(False, "Show TensorFlow's own logs.")


@dataclasses.dataclass
class Counts:
    read: int = 0
    predicted: int = 0
    rejected: int = 0


def _chunks(items: Iterator[Tuple[int, Any]], size: int) -> Iterator[List[Tuple[int, Any]]]:
    chunk: List[Tuple[int, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_lines(handle: IO[str], model: Any, out: IO[str], batch_size: int,
                  training_query: str, err: Optional[IO[str]] = None) -> Counts:
    """Decides (a table's values by the version's `training_query`), predicts and prints chunk
    by chunk, in line order; returns the counts."""
    from serving.encoding import encode_json, rows

    counts = Counts()
    for chunk in _chunks(instances.json_records(handle), max(1, batch_size)):
        decided = [instances.decide(counts.read + i, line, record, training_query)
                   for i, (line, record) in enumerate(chunk)]
        counts.read += len(decided)
        accepted = [d for d in decided if isinstance(d, instances.Accepted)]
        predictions = iter(())
        if accepted:
            columns = {name: [a.instance[name] for a in accepted]
                       for name in features.FEATURE_NAMES}
            predictions = iter(rows(model.predict(validation.DEFAULT_SIGNATURE, columns)))
        for decision in decided:
            if isinstance(decision, instances.Accepted):
                out.write(encode_json(next(predictions)).decode() + "\n")
                counts.predicted += 1
            else:
                out.write(encode_json({"line": decision.line, "error": decision.reason})
                          .decode() + "\n")
                counts.rejected += 1
                if err is not None:
                    print(f"error: line {decision.line}: {decision.reason}", file=err)
    return counts


def _load(version: int, path: str) -> Optional[Tuple[Any, str]]:
    """(the loaded version, its training query), or None once why it does not load is said."""
    from serving import training_query
    from serving.model_store import cannot_load, load_version

    try:
        return load_version(version, path), training_query.query_of_version(version, path)
    except Exception as error:  # noqa: BLE001 - a version that does not load is a message
        print(f"error: {cannot_load(version, path, error)}", file=sys.stderr)
        return None


def main(argv: Optional[List[str]] = None, out: IO[str] = sys.stdout) -> int:
    parser = command_parser("python -m serving.local_predict", __doc__, LocalPredictConfig)
    config = from_flags(LocalPredictConfig, parser.parse_args(argv))
    if not config.json_instances:
        parser.error("--json-instances is required")
    logs.setup(config.verbose)
    from serving.model_store import resolve_version

    try:
        version, path = resolve_version(config.model_dir, config.version)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from_stdin = config.json_instances == "-"
    try:
        handle = instances.open_text(sys.stdin.buffer if from_stdin
                                     else open(config.json_instances, "rb"))
    except OSError as error:
        print(f"error: cannot read --json-instances: {error}", file=sys.stderr)
        return 1
    try:
        loaded = _load(version, path)
        if loaded is None:
            return 1
        model, query = loaded
        counts = predict_lines(handle, model, out, config.batch_size, query, err=sys.stderr)
    finally:
        if from_stdin:
            handle.detach()  # stdin stays open
        else:
            handle.close()
    out.flush()
    print(f"{config.json_instances}: read {counts.read}, predicted {counts.predicted}, "
          f"rejected {counts.rejected}", file=sys.stderr)
    problem = instances.too_many_rejected(counts.read, counts.rejected, config.max_error_rate)
    if problem:
        print(f"error: {config.json_instances}: {problem}", file=sys.stderr)
        return EXIT_INVALID
    return 0


if __name__ == "__main__":
    sys.exit(main())
