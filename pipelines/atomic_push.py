"""Pushes into a TF Serving directory that several processes may push into at once.

Pushes take turns under an fcntl lock file beside the serving directory, so two runs pushing at
once never pick the same version or touch each other's copy. Each push copies into a hidden
staging directory and renames it into place (atomic on one filesystem), never over an existing
version. A staging directory found while holding the lock was left by a process that died
mid-push, and is removed. No TFX imports: light enough for any process to load.
"""
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import pathlib
import shutil
import time
from typing import Any, Dict, Iterator, List, Optional

from common.locks import flock_within
from common.versions import parse_version

PUSH_RECORD = "babyweight_push.json"
STAGING_SUFFIX = ".incomplete"
LOCK_TIMEOUT_S = 600.0

log = logging.getLogger("babyweight.push")


class PushError(RuntimeError):
    """A push that could not land; the message says why and nothing was changed."""


def is_version_name(name: str) -> bool:
    """TF Serving's version directories: the server's rule (common.versions), written once."""
    return parse_version(name) is not None


# The files a SavedModel's graph is in; TF Serving loads a version that holds one.
GRAPH_FILES = ("saved_model.pb", "saved_model.pbtxt")


def serving_versions(serving_dir: pathlib.Path) -> Dict[int, pathlib.Path]:
    """The complete version directories TF Serving would load: integer names only."""
    if not serving_dir.is_dir():
        return {}
    return {version: p for p in serving_dir.iterdir()
            if (version := parse_version(p.name)) is not None and p.is_dir()}


def latest_push_record(serving_dir: pathlib.Path) -> Optional[Dict[str, Any]]:
    """The push record of the newest version that holds its graph, the one TF Serving can
    load: a push onto Cloud Storage, which cannot rename a directory into place, writes the
    graph last, so a version whose push was killed or is still copying has a record (or
    nothing) but no graph, and a model is not "already serving" as such a version."""
    versions = serving_versions(serving_dir)
    for version in sorted(versions, reverse=True):
        if not any((versions[version] / name).is_file() for name in GRAPH_FILES):
            continue
        record = versions[version] / PUSH_RECORD
        return json.loads(record.read_text()) if record.exists() else None
    return None


def model_digest(model_dir: pathlib.Path) -> str:
    """sha256 of a model directory's files (relative paths, sizes, bytes), its push record left
    out: equal exactly when two directories hold the same model, wherever they were written."""
    digest = hashlib.sha256()
    record = model_dir / PUSH_RECORD
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file() and p != record):
        digest.update(f"{path.relative_to(model_dir).as_posix()}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def newest_serving_as(serving_dir: pathlib.Path, digest: str, uri: str) -> Optional[int]:
    """The newest version, when it was pushed from the model of `digest` (model_digest's, as
    its push record keeps it), else None; a record from before digests by the model's `uri`.

    By content, not by the URI: TFX names a Trainer's output by its execution id, so a new
    metadata store over the same pipeline root writes a different model to a URI a served
    version came from. The record's digest, not the version's files: the run's model card is
    added to the version after the push."""
    record = latest_push_record(serving_dir)
    if record is None:
        return None
    if "model_digest" in record:
        same = record["model_digest"] == digest
    else:
        same = record.get("model_uri") == uri
    return record["version"] if same else None


def lock_path(serving_dir: pathlib.Path) -> pathlib.Path:
    """Beside the serving directory, so that its listing holds only versions and staging."""
    return serving_dir.parent / f".{serving_dir.name}.push.lock"


@contextlib.contextmanager
def push_lock(serving_dir: pathlib.Path, timeout_s: float = LOCK_TIMEOUT_S,
              wait: bool = True) -> Iterator[bool]:
    """Holds the serving directory's push lock; yields False when `wait` is off and it is held.

    An fcntl lock dies with its process, so a push killed halfway never blocks the next one.
    """
    serving_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(serving_dir), "a+") as handle:
        if not flock_within(handle, fcntl.LOCK_EX, timeout_s if wait else 0):
            if not wait:
                yield False
                return
            raise PushError(
                f"another push into {serving_dir} held its lock ({lock_path(serving_dir)}) "
                f"for over {timeout_s:.0f} s; nothing was pushed")
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_stale_staging(serving_dir: pathlib.Path) -> List[pathlib.Path]:
    """Removes staging directories of dead pushes; call only while holding the push lock."""
    if not serving_dir.is_dir():
        return []
    stale = [p for p in serving_dir.iterdir()
             if p.name.startswith(".") and p.name.endswith(STAGING_SUFFIX)]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
        log.warning("Removed %s, the half-copied push of a run that stopped during its push",
                    path)
    return stale


def clean_up_dead_pushes(serving_dir: pathlib.Path) -> List[pathlib.Path]:
    """What a run killed mid-push left in `serving_dir`; nothing while a live push runs."""
    with push_lock(serving_dir, wait=False) as held:
        return remove_stale_staging(serving_dir) if held else []


def _rename_no_replace(staging: pathlib.Path, final: pathlib.Path) -> None:
    """os.rename, except that an existing `final` (even an empty one) is an error, not a target."""
    if final.exists():
        raise PushError(f"version directory {final} already exists; nothing was pushed")
    try:
        os.rename(staging, final)
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise PushError(f"version directory {final} already exists; nothing was pushed") \
                from error
        raise


def push_atomically(model_dir: pathlib.Path, serving_dir: pathlib.Path,
                    record: Dict[str, Any]) -> int:
    """Copies `model_dir` to serving_dir/<version>/ via a staging name; returns the version.

    Versions are the push's second, or one more than the newest version when that is not
    larger, so they are unique and increase even for pushes within one second.
    """
    serving_dir.mkdir(parents=True, exist_ok=True)
    with push_lock(serving_dir):
        return push_while_locked(model_dir, serving_dir, record)


def push_while_locked(model_dir: pathlib.Path, serving_dir: pathlib.Path,
                      record: Dict[str, Any]) -> int:
    """push_atomically's work, for a caller that already holds the push lock."""
    serving_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(serving_dir)
    version = max(int(time.time()), max(serving_versions(serving_dir), default=0) + 1)
    staging = serving_dir / f".{version}.{os.getpid()}{STAGING_SUFFIX}"
    try:
        shutil.copytree(model_dir, staging)
        (staging / PUSH_RECORD).write_text(json.dumps({**record, "version": version}, indent=2))
        _rename_no_replace(staging, serving_dir / str(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version
