"""Writing a file so that a reader never sees half of it (the reports, cards and pages all do),
and never over the file a command reads."""
from __future__ import annotations

import os
import pathlib
import tempfile
from typing import BinaryIO, Callable, List, Optional, Sequence, Union

Path = Union[str, "os.PathLike[str]"]


def write_atomically(out_path: pathlib.Path, text: str) -> None:
    """Temp file in the same directory, then os.replace: a reader never sees half a report."""
    write_with_atomically(out_path, lambda handle: handle.write(text.encode("utf-8")))


def write_with_atomically(out_path: pathlib.Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(handle)` into a temp file of its own in the same directory, then os.replace:
    a reader never sees half a file, and two writers at once each publish a whole one."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from others
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _key(path: str) -> str:
    return path if "://" in path else os.path.realpath(path)


def overwritten_input(out: Path, *inputs: Optional[Path], sources: Sequence[Optional[str]] = (),
                      listing: Callable[[str], List[str]] = lambda source: []
                      ) -> Optional[str]:
    """The input that writing `out` would replace, else None: a command writing its result
    over what it read loses that input. `inputs` are opened as the paths they name; `sources`
    are read as the files `listing` gives (DuckDB's glob for a --source) and as themselves.
    The check must agree with the readers: Python's glob reads the '[v2]' of an existing
    'exports [v2]/natality.csv' as a pattern, matches nothing, and let it be replaced."""
    target = _key(os.fspath(out))
    read = [(os.fspath(given), [os.fspath(given)]) for given in inputs if given]
    read += [(given, [given] + ([] if "://" in given else listing(given)))
             for given in sources if given]
    for given, matched in read:
        if any(_key(path) == target for path in matched):
            return given
    return None


def unusable_dir(path: Path) -> Optional[str]:
    """Why `path` cannot be a directory a command writes in (made if missing), or None: checked
    before any work, so that a file in the way is one line naming it, not a traceback later."""
    if "://" in os.fspath(path):
        return None
    path = pathlib.Path(path)
    existing = path
    while not existing.exists() and existing.parent != existing:
        if existing.is_symlink():
            return f"{existing} is a broken symbolic link"
        existing = existing.parent
    if not existing.is_dir():
        return (f"{existing} is a file, not a directory" if existing == path else
                f"{existing} is a file, so no directory can be made under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def unusable_file(path: Path) -> Optional[str]:
    """Why `path` cannot be a file a command writes (its directory made if missing), or None."""
    if "://" in os.fspath(path):
        return None
    path = pathlib.Path(path)
    if path.is_dir():
        return f"{path} is a directory, not a file"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    return unusable_dir(path.parent)
