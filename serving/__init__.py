"""Serving babyweight's pushed models: a TF Serving-compatible REST server, local and batch predict.

Modules, one job each:
  settings        the typed settings every command turns into flags (common.config style)
  validation      request checks against modules/features.py, shared by every entry point
  versions        what names a version: common.versions (shared with the pusher), re-exported
  model_store     finds versions on disk, loads, checks and warms one up
  version_manager which versions serve: the version policy, labels, retries, switches, unloads
  model_config    TF Serving's model config file (--model-config-file): policy and labels
  loader          the background thread that refreshes the versions and re-reads the config
  pacing          keeps the loader and request-log threads from stalling requests (bursts, pauses)
  security        Host check, bearer token, JSON-only bodies (no use from other web pages)
  batching        gathers concurrent requests into one model call, run off the event loop
  schemas         OpenAPI schemas derived from the feature declaration
  app             the FastAPI app: its parts, error handlers, routers and middleware
  rest_predict    REST :predict, :regress, :classify (the hot path, on routes that answer direct)
  rest_model      REST status, metadata, /healthz, Prometheus
  rest_common     what the REST handlers share: JSON answers, versions in paths, the body reader
  server          `python -m serving.server`: the CLI that runs the app
  local_predict   `python -m serving.local_predict`: gcloud's `local predict`, same checks
  instances       one input line or row -> an instance or a rejection, for local and batch predict
  batch_predict   `python -m serving.batch_predict`: Beam RunInference over files or the warehouse
  batch_input     batch prediction's rows from files, the warehouse or an export
  batch_output    batch prediction's files, written in input order, whole or not at all
"""
import common  # noqa: F401,E402  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
