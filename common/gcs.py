"""Cloud Storage as files: a gs:// URI's place on a Cloud Storage FUSE mount.

Vertex AI mounts every bucket at /gcs/<bucket>/ in the pipeline's tasks; on a workstation,
`gcsfuse --implicit-dirs BUCKET /gcs/BUCKET` makes the same paths. Code that reads artifacts
as files (TFDV statistics, TFRecords, a SavedModel) then reads them unchanged.
"""
from __future__ import annotations

import os
import pathlib
from typing import Optional

GCS_MOUNT_ENV = "BABYWEIGHT_GCS_MOUNT"
DEFAULT_GCS_MOUNT = "/gcs"


def mounted(uri: str, mount: Optional[str] = None) -> pathlib.Path:
    """Where gs://bucket/path is on the mount (`mount`, else $BABYWEIGHT_GCS_MOUNT, else
    /gcs); any other path as it is."""
    if not uri.startswith("gs://"):
        return pathlib.Path(uri)
    root = mount or os.environ.get(GCS_MOUNT_ENV) or DEFAULT_GCS_MOUNT
    return pathlib.Path(root) / uri[len("gs://"):]
