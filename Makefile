# The two commands a new user needs: `make demo` and `make test`. Both create .venv on first use.
PY := .venv/bin/python
# Offline by design: no telemetry, no hub look-ups; Prefect state stays inside the project.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME := $(CURDIR)/.prefect
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test test-all system-deps bench clean

setup:
	@python3 scripts/install_env.py

demo: setup
	$(PY) -m datagen demo

system-deps:
	@bash scripts/install_system_deps.sh

test: setup system-deps
	$(PY) -m pytest

test-all: setup system-deps
	$(PY) -m pytest -m ''

clean:
	rm -rf data .prefect manifests/*.json manifests/*.parquet test-artifacts
