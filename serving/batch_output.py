"""Writes a Beam collection of (row index, text line) as one file, in row order, all or nothing.

Why not WriteToText: it writes lines in whatever order the workers finish them, and a run that
fails leaves a partial file under the final name. Here lines are grouped into blocks of
consecutive row indexes, each block is sorted and written as its own part file, and once the
pipeline has succeeded the launcher concatenates the parts in order into `<output>.incomplete`
and renames that to the output. Memory per worker is one block; the launcher streams.

Each run's parts and staging file carry the run's own id (`new_run_id`): two runs writing the
same output at once each assemble their own rows, and the output is one run's whole file,
never a mix of the two or a file with another run's blocks deleted from under it. A local
output is also held by one run at a time (`exclusive`): a second run is refused, naming the
first, since the predictions and the errors are two files, and two runs renaming them in turn
could leave one run's predictions beside the other's errors; holding it, a run removes the
parts that a killed run left.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
import re
import shutil
import time
import uuid
from typing import Any, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

LOGGER = logging.getLogger("babyweight.serving")
BLOCK_ROWS = 10_000
PARTS_SUFFIX = ".parts"
INCOMPLETE_SUFFIX = ".incomplete"
_RUN_ID = re.compile(r"-[0-9a-f]{12}$")


class OutputBusy(RuntimeError):
    """Another run holds the output."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def _lock_path(output: str) -> str:
    directory, name = os.path.split(output)
    return os.path.join(directory, f".{name}.lock")


@contextlib.contextmanager
def exclusive(output: str, *companions: str) -> Iterator[None]:
    """Holds a local `output` (and the files written beside it, `companions`) for one run, and
    removes what runs killed before they finished left for them. Object stores have no
    locks: there each run's files are still its own, but the pair is not guarded."""
    if "://" in output:
        yield
        return
    with held(_lock_path(output), output):
        _remove_leftovers((output,) + companions)
        yield


@contextlib.contextmanager
def held(path: str, what: str) -> Iterator[None]:
    """Holds the local lock file `path` for this process; OutputBusy names the holder."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "a process"
            raise OutputBusy(f"another batch prediction ({holder}) is writing {what}; wait "
                             "for it to finish or choose another --output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield  # the lock goes with the handle; the file stays (removing it would race)


def _remove_leftovers(outputs: Tuple[str, ...]) -> None:
    """(Holding the outputs.) The part directories and staging files of runs that died."""
    for output in outputs:
        for suffix in (PARTS_SUFFIX, INCOMPLETE_SUFFIX):
            for left in glob.glob(f"{glob.escape(output)}{suffix}-*"):
                if _RUN_ID.search(left):
                    LOGGER.warning("Removing %s, left by a run that did not finish", left)
                    _delete([left])


def parts_dir(output: str, run: str) -> str:
    return f"{output}{PARTS_SUFFIX}-{run}"


def _blocked(element: Tuple[int, str]) -> Tuple[int, Tuple[int, str]]:
    index, _ = element
    return index // BLOCK_ROWS, element


class _WriteBlock(beam.DoFn):
    """One sorted part file per block; a retried bundle rewrites the same file whole."""

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def process(self, element: Tuple[int, Iterable[Tuple[int, str]]]) -> Iterator[int]:
        block, items = element
        lines = [text for _, text in sorted(items, key=lambda item: item[0])]
        path = FileSystems.join(self._directory, f"{block:012d}")
        with FileSystems.create(path) as handle:
            handle.write("".join(line + "\n" for line in lines).encode("utf-8"))
        yield len(lines)


class WriteInOrder(beam.PTransform):
    """(row index, line) -> part files under parts_dir(output, run); `assemble` finishes the
    file."""

    def __init__(self, output: str, run: str) -> None:
        super().__init__()
        self._output, self._run = output, run

    def expand(self, lines: Any) -> Any:
        return (lines
                | "Block" >> beam.Map(_blocked)
                | "Group" >> beam.GroupByKey()
                | "WriteBlocks" >> beam.ParDo(_WriteBlock(parts_dir(self._output, self._run))))


def remove_parts(output: str, run: str) -> None:
    """Deletes run `run`'s part files for `output` (after a failure, or once assembled)."""
    directory = parts_dir(output, run)
    parts = _parts(directory)
    if parts:
        _delete(parts)
    if FileSystems.exists(directory):  # a local directory; on object stores it was a prefix
        _delete([directory])


def _delete(paths: List[str]) -> None:
    """Deletes each path as named (a local directory with all it holds): FileSystems.delete
    reads its paths as patterns, and a '[v2]' in one matches nothing, failing the run."""
    for path in paths:
        if "://" in path:
            continue
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    remote = [literal_pattern(path) for path in paths if "://" in path]
    if remote:
        FileSystems.delete(remote)


def read_parts(output: str, run: str) -> List[str]:
    """Run `run`'s lines for `output`, in row order, without assembling a file."""
    lines: List[str] = []
    for part in _parts(parts_dir(output, run)):
        with FileSystems.open(part) as handle:
            lines.extend(handle.read().decode("utf-8").splitlines())
    return lines


def _parts(directory: str) -> List[str]:
    """The part files, the directory's own: a '[v2]' in the output's path is part of its
    name, where a glob reads it as a pattern, finds no parts and the assembled file is empty.
    A local directory is listed; on object stores the "directory" is a prefix, matched with
    its glob characters escaped."""
    if "://" not in directory:
        if not os.path.isdir(directory):
            return []
        return sorted(path for path in (os.path.join(directory, name)
                                        for name in os.listdir(directory))
                      if os.path.isfile(path))
    pattern = FileSystems.join(literal_pattern(directory), "*")
    return sorted(metadata.path for metadata in FileSystems.match([pattern])[0].metadata_list)


def literal_pattern(path: str) -> str:
    """`path` as a FileSystems.match pattern matching itself alone: Beam's patterns have no
    escape character, so each of `[`, `*` and `?` becomes a class of that one character."""
    return re.sub(r"([[*?])", r"[\1]", path)


def assemble(output: str, run: str, header: Optional[str] = None) -> int:
    """Concatenates run `run`'s part files in block order into `output`; returns the lines
    written."""
    directory = parts_dir(output, run)
    parts = _parts(directory)
    staging = f"{output}{INCOMPLETE_SUFFIX}-{run}"
    count = 0
    # The staging name hides the output's .gz, so its compression is named explicitly.
    compression = CompressionTypes.detect_compression_type(output)
    with FileSystems.create(staging, compression_type=compression) as out:
        if header is not None:
            out.write((header + "\n").encode("utf-8"))
        for part in parts:
            with FileSystems.open(part) as handle:
                data = handle.read()
            count += data.count(b"\n")
            out.write(data)
    _replace(staging, output)
    remove_parts(output, run)
    return count


def _replace(staging: str, output: str) -> None:
    """Renames `staging` over `output` without deleting `output` first: deleting would leave
    no output for a moment, and FileSystems.delete removes a directory with all it holds. A
    local rename replaces a file atomically and fails on a directory; on Cloud Storage the
    rename is a copy, which replaces the object whole."""
    if "://" not in output and os.path.isdir(output):
        _delete([staging])
        raise IsADirectoryError(f"{output} is a directory, not a file: it was left as it was")
    FileSystems.rename([staging], [output])
