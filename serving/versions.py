"""TF Serving's rule for a version's name, and the listing of a model directory by it.

The rule is written once, in `common.versions`, because the pusher (pipelines/atomic_push.py)
lists versions by the same rule and the pipeline must not depend on the server's package. The
listing reads a local directory without TensorFlow, so the server can check a model config
file's labels before it imports TensorFlow (a wrong file is exit 2 at once).
"""
from __future__ import annotations

import os
import posixpath
from typing import Dict, List, Tuple

from common.versions import INT64_MAX, parse_version, split_version_names  # noqa: F401


def list_version_dirs(model_dir: str) -> Tuple[Dict[int, str], List[str]]:
    """({version: directory}, [names that are not versions]) under `model_dir`.

    The rule for a version's name is common/versions.py's (ASCII digits, fits int64); a
    file with a version's name is not a version either. A missing directory has none. A URL
    (gs://...) is read through TensorFlow's file system, a local path directly.
    """
    if "://" in model_dir:
        import tensorflow as tf

        listdir, isdir, join, missing = (tf.io.gfile.listdir, tf.io.gfile.isdir, posixpath.join,
                                         tf.errors.NotFoundError)
    else:
        listdir, isdir, join, missing = os.listdir, os.path.isdir, os.path.join, OSError
    try:
        names = listdir(model_dir)
    except missing:
        return {}, []
    numbered, ignored = split_version_names(names)
    result = {}
    for version, name in numbered.items():
        path = join(model_dir, name)
        if isdir(path):
            result[version] = path
    return result, ignored
