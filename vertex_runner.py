#!/usr/bin/env python
"""Runs the babyweight pipeline on Google Cloud (Vertex AI Pipelines, BigQuery, Dataflow).

Not ready yet: the pipeline definition in pipelines/ is shared with local_runner.py, and this
runner will compile it with KubeflowV2DagRunner and submit it to Vertex AI.
"""
import sys


def main() -> int:
    print("vertex_runner.py is not ready yet: run the pipeline locally with `make` "
          "(see README.md).", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
