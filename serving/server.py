"""`python -m serving.server`: serve the newest pushed babyweight model over TF Serving's REST API.

    .venv/bin/python -m serving.server --model-dir serving_model/babyweight \\
        --model-name babyweight --host 127.0.0.1 --port 8501

    curl -s localhost:8501/v1/models/babyweight
    curl -s -d '{"instances": [{"is_male": "True", "mother_age": 26.0,
                 "plurality": "Single(1)", "gestation_weeks": 39}]}' \\
        localhost:8501/v1/models/babyweight:predict

It watches --model-dir: a new version directory (the pipeline's ServingPusher renames one into
place) is loaded, warmed up and switched in without dropping a request; one that fails to load
is logged and the current version keeps serving. OpenAPI: /docs and /openapi.json.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from pipelines import logs  # noqa: E402
from pipelines.config import add_flags, from_flags  # noqa: E402
from serving.settings import BatchingConfig, LimitsConfig, ModelConfig, ServerConfig  # noqa: E402

LOGGER = logging.getLogger("babyweight.serving")
CONFIGS = (ModelConfig, ServerConfig, LimitsConfig, BatchingConfig)


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m serving.server", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    for config in CONFIGS:
        add_flags(result, config)
    return result


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    model, server, limits, batching = (from_flags(c, args) for c in CONFIGS)
    logs.setup(server.verbose)
    import uvicorn

    from serving.app import create_app

    app = create_app(model, limits, batching, poll_seconds=server.poll_seconds,
                     access_log=server.access_log)
    LOGGER.info("Serving %s from %s on http://%s:%d (docs: /docs)", model.model_name,
                model.model_dir, server.host, server.port)
    uvicorn.run(app, host=server.host, port=server.port, log_config=None, access_log=False,
                log_level="info" if server.verbose else "warning", timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
