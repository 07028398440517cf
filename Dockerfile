# The babyweight pipeline's image on Google Cloud: every Vertex AI Pipelines component, the
# Vertex AI Training jobs (Trainer, Tuner) and the Dataflow workers (--sdk_container_image) run it.
#
# Why an image of our own: the components load the module code by dotted name
# (modules.model.run_fn, modules.preprocessing.preprocessing_fn, pipelines.components.*), so the
# project must be importable wherever they run, Dataflow workers included; this is the cure for
# TFX's classic `ModuleNotFoundError: No module named 'user_module'`.
#
# The base is TFX's own image of the same version: TFX, TensorFlow, Beam (with the Dataflow
# worker boot entrypoint, which stays the ENTRYPOINT) already at the versions requirements.lock
# pins. We add only what the lock has and the image lacks, constrained to the lock's versions.
#
# Build and push (docs/cloud.md, step 4), from the repository root, tagged with the code's
# fingerprint (a hash of this file and of everything it copies), the tag the compiled pipeline
# names by default:
#   gcloud builds submit --region="$REGION" --machine-type=e2-highcpu-8 --timeout=3600 \
#     --tag "$REGION-docker.pkg.dev/$PROJECT/babyweight/babyweight:$(.venv/bin/python vertex_runner.py image-tag)" .
# or with a local Docker engine:
#   docker build -t "$IMAGE" . && docker push "$IMAGE"
ARG TFX_IMAGE=gcr.io/tfx-oss-public/tfx:1.16.0
FROM ${TFX_IMAGE}

ENV TF_USE_LEGACY_KERAS=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# The lock is resolved for Python 3.10, as TFX 1.16 is.
RUN python -c "import sys; assert sys.version_info[:2] == (3, 10), sys.version"

# pyfarmhash builds from source: it needs a C++ compiler if the base image has none.
RUN command -v g++ >/dev/null || { apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*; }

# Must match IMAGE_PROJECT_DIR in pipelines/cloud_config.py: ImportSchemaGen reads
# /babyweight/schema/schema.pbtxt.
WORKDIR /babyweight

# Dependencies first, so code changes rebuild only the last layers.
COPY requirements.lock ./
RUN python -m pip install -c requirements.lock \
        duckdb sqlglot pyfarmhash matplotlib tf-keras keras-tuner

COPY setup.py local_runner.py vertex_runner.py ./
COPY common/ common/
COPY pipelines/ pipelines/
COPY modules/ modules/
COPY warehouse/ warehouse/
# The Vertex AI push writes each version's model card with the run report's code.
COPY reports/ reports/
COPY schema/ schema/
RUN python -m pip install --no-deps . \
    && cd / && python -c "import modules.model, modules.preprocessing, pipelines.components.anomaly_gate, pipelines.components.vertex_pusher, reports.model_card, warehouse.sql; print('babyweight importable')"
