"""TF Serving's rule for a version's name, as the server's modules import it.

The rule is written once, in `common.versions`, because the pusher (pipelines/atomic_push.py)
lists versions by the same rule and the pipeline must not depend on the server's package.
"""
from common.versions import INT64_MAX, parse_version, split_version_names  # noqa: F401
