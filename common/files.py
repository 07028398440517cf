"""Writing a file so that a reader never sees half of it: the reports, cards and pages all do."""
from __future__ import annotations

import os
import pathlib
import tempfile


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
