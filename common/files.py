"""Writing a file so that a reader never sees half of it (the reports, cards and pages all do),
and never over the file a command reads."""
from __future__ import annotations

import glob
import os
import pathlib
import tempfile
from typing import Optional, Union

Path = Union[str, "os.PathLike[str]"]


def write_atomically(out_path: pathlib.Path, text: str) -> None:
    """Temp file in the same directory, then os.replace: a reader never sees half a report."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide the report from others
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _key(path: str) -> str:
    return path if "://" in path else os.path.realpath(path)


def overwritten_input(out: Path, *inputs: Optional[Path]) -> Optional[str]:
    """The input that writing `out` would replace (the same file, or a file a glob input
    matches), else None: a command writing its result over what it read loses that input."""
    target = _key(os.fspath(out))
    for given in inputs:
        if not given:
            continue
        given = os.fspath(given)
        matched = glob.glob(given) if "://" not in given and glob.has_magic(given) else [given]
        if any(_key(path) == target for path in matched):
            return given
    return None
