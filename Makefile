# babyweight: `make` sets everything up and runs the local pipeline; `make test` runs the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := run

# Python 3.10 is what TFX 1.16 supports; pyenv machines have it outside PATH's shims.
PYTHON310 ?= $(shell command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'print(1)' >/dev/null 2>&1 \
  && command -v python3.10 || ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10.*/bin/python3.10 2>/dev/null | tail -n 1)
VENV := .venv
# uv lives in its own small environment: `uv pip sync` makes .venv exactly the lock.
TOOLS := .venv-tools
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
export TF_USE_LEGACY_KERAS := 1
export PYTHONWARNINGS := ignore

.PHONY: run test test-fast install lock clean benchmark vertex-compile browser reports serve \
  batch-predict monitor ct-demo

# The environment is rebuilt whenever the lock file changes; install never resolves. Bytecode is
# compiled once at install (about 15 s): where PYTHONDONTWRITEBYTECODE is set, as on many CI
# machines and images, Python would otherwise compile every module of the TFX stack again on
# every start (13 s to import it instead of 5.5 s).
$(VENV)/.installed: requirements.lock setup.py
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found: install it or pass PYTHON310=/path/to/python3.10" >&2; exit 1; }
	@test -x $(TOOLS)/bin/uv || { $(PYTHON310) -m venv $(TOOLS) && $(TOOLS)/bin/pip install -q "uv==$(UV_VERSION)"; }
	@test -x $(PY) || $(TOOLS)/bin/uv venv --python $(PYTHON310) $(VENV)
	$(TOOLS)/bin/uv pip sync --compile-bytecode --python $(PY) requirements.lock
	$(TOOLS)/bin/uv pip install --compile-bytecode --python $(PY) --no-deps -e .
	@touch $@

install: $(VENV)/.installed

run: install
	$(PY) local_runner.py $(ARGS)

# Chromium for the reports' browser tests (Debian's package; Playwright drives it, never downloads one).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium) \
	  || echo "warning: could not install chromium (root needed); the browser tests will skip"

# The suite in one process per core (at most 4: each holds TensorFlow), whole test modules
# handed out longest first (tests/conftest.py); the shared session fixtures are still made once
# in all (tests/made_once.py).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 4 ? n : 4 )))
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: install browser
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

# The tests that run no pipeline (marked `slow`: whole runs, and all that read the pipeline_runs
# fixture), for the edit-test loop; `make test` is still what CI runs.
test-fast: install browser
	$(PY) -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

# Rebuild the index of all runs (and any missing run page) from ML Metadata.
reports: install
	$(PY) -m reports index $(ARGS)

# Every benchmark, one after the other; each rewrites its table in README.md.
benchmark: install
	$(PY) -m benchmarks.data_stages
	$(PY) -m benchmarks.model_quality
	$(PY) -m benchmarks.pipeline_speed
	$(PY) -m benchmarks.serving
	$(PY) -m benchmarks.monitoring

# The newest pushed model over TF Serving's REST API on 127.0.0.1:8501 (ARGS for more flags).
serve: install
	$(PY) -m serving.server --model-dir serving_model/babyweight --model-name babyweight $(ARGS)

batch-predict: install
	$(PY) -m serving.batch_predict $(ARGS)

# Served traffic against the model's training data (start the server with --request-log-dir).
monitor: install
	$(PY) -m monitoring $(ARGS)

# The continuous-training loop on this machine: train, serve, shifted traffic flagged, retrain
# on the new months, the next window clean (in runs/ct-demo, which must not exist yet).
ct-demo: install
	$(PY) -m monitoring.scenario $(ARGS)

# The Vertex AI pipeline JSON, compiled offline; the project and bucket come from ARGS
# (--project, --bucket) or BABYWEIGHT_PROJECT / BABYWEIGHT_BUCKET (see docs/cloud.md).
vertex-compile: install
	$(PY) vertex_runner.py compile $(ARGS)

# Re-resolve requirements.in into the lock (needs the network; commit the result).
lock:
	uv pip compile requirements.in --python-version 3.10 --python-platform x86_64-manylinux_2_28 -o requirements.lock

clean:
	rm -rf runs serving_model
