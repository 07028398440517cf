"""`python -m serving.local_predict`: predict from a JSON-lines file without a server.

The course's `gcloud ai-platform local predict --model-dir ... --json-instances ...`, for the
pushed model:

    .venv/bin/python -m serving.local_predict --model-dir serving_model/babyweight \\
        --json-instances instances.jsonl          # one instance object per line ('-' = stdin)

prints one JSON object per instance, in order: {"weight_pounds": 7.68}. The instances are
checked exactly as the server checks them (serving.validation) and run through the same
`serving_default` signature, so the answers are the server's. An invalid line stops the run
with exit code 2 and names the line, the field and the problem.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import IO, Any, Iterator, List, Optional, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from pipelines import logs  # noqa: E402
from pipelines.config import add_flags, from_flags, setting  # noqa: E402
from serving import validation  # noqa: E402
from serving.settings import DEFAULT_MODEL_DIR  # noqa: E402

EXIT_INVALID = 2


@dataclasses.dataclass(frozen=True)
class LocalPredictConfig:
    """Which model version, which instances."""

    model_dir: str = setting(DEFAULT_MODEL_DIR, "Directory of version directories "
                             "(the pipeline's --serving-dir).")
    version: Optional[int] = setting(None, "Version to use; default: the newest.")
    json_instances: Optional[str] = setting(
        None, "JSON-lines file, one instance object per line ('-' reads stdin). Required.")
    batch_size: int = setting(1000, "Instances per model call.")
    verbose: bool = setting(False, "Show TensorFlow's own logs.")


def read_instances(handle: IO[str]) -> Iterator[Tuple[int, Any]]:
    """(line number, parsed JSON) for every non-blank line; bad JSON is a RequestError."""
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError as error:
            raise validation.RequestError(f"line {number}: malformed JSON: {error}") from None


def _chunks(items: Iterator[Tuple[int, Any]], size: int) -> Iterator[List[Tuple[int, Any]]]:
    chunk: List[Tuple[int, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_lines(handle: IO[str], model: Any, out: IO[str], batch_size: int) -> int:
    """Validates and predicts chunk by chunk; returns the number of predictions printed."""
    from serving.encoding import encode_json, rows

    printed = 0
    for chunk in _chunks(read_instances(handle), max(1, batch_size)):
        try:
            columns, _ = validation.feature_columns_from_instances([i for _, i in chunk],
                                                                   len(chunk))
        except validation.RequestError as error:
            line = chunk[error.index][0] if error.index is not None else chunk[0][0]
            message = error.message
            prefix = f"instances[{error.index}]"
            if message.startswith(prefix):
                message = message[len(prefix):].lstrip(".:").strip()
            raise validation.RequestError(f"line {line}: {message}", error.field,
                                          error.index) from None
        outputs = model.predict(validation.DEFAULT_SIGNATURE, columns)
        for row in rows(outputs):
            out.write(encode_json(row).decode() + "\n")
        printed += len(chunk)
    return printed


def main(argv: Optional[List[str]] = None, out: IO[str] = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.local_predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, LocalPredictConfig)
    config = from_flags(LocalPredictConfig, parser.parse_args(argv))
    if not config.json_instances:
        parser.error("--json-instances is required")
    logs.setup(config.verbose)
    from serving.model_store import load_version, resolve_version

    try:
        version, path = resolve_version(config.model_dir, config.version)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    model = load_version(version, path)
    handle = sys.stdin if config.json_instances == "-" else open(config.json_instances)
    try:
        predict_lines(handle, model, out, config.batch_size)
    except validation.RequestError as error:
        print(f"error: {config.json_instances}: {error.message}", file=sys.stderr)
        return EXIT_INVALID
    finally:
        if handle is not sys.stdin:
            handle.close()
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
