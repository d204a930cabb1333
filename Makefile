# The two commands a new user needs: `make demo` and `make test`. Both create .venv on first use.
PY := .venv/bin/python
# Offline by design: no telemetry, no hub look-ups; Prefect state stays inside the project.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME := $(CURDIR)/.prefect
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test test-all system-deps bench mutate stack-up stack-down stack-status clean

setup:
	@python3 scripts/install_env.py

# The demo runs through the Prefect flows users deploy (a throwaway local server);
# `python -m datagen demo` runs the same plan without Prefect.
demo: setup
	$(PY) -m flows demo

system-deps:
	@bash scripts/install_system_deps.sh

test: setup system-deps
	$(PY) -m pytest

test-all: setup system-deps
	$(PY) -m pytest -m ''

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml; docs/TESTING.md). Slow
# (about a mutant a second on 2 cores) and never part of `make test` or CI. Narrow it with
# ONLY='datagen.compositing.*'. Results are kept in mutants/: a rerun retests only what changed.
mutate: setup
	$(PY) -m pip install --disable-pip-version-check -q 'mutmut>=3.8,<4'
	$(PY) -m mutmut run --max-children 2 $(ONLY) >/dev/null || true
	$(PY) scripts/mutation_score.py mutants

# A local Prefect stack: server on 127.0.0.1:4200 (state in .prefect/), `datagen` process pool,
# every deployment in prefect.yaml, and a worker. Then: prefect deployment run synth-understanding/demo
stack-up: setup
	$(PY) scripts/stack.py up

stack-down:
	$(PY) scripts/stack.py down

stack-status:
	$(PY) scripts/stack.py status

bench: setup
	for b in shards understanding orchestration review trainer; do $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf data review-queue .prefect manifests/*.json manifests/*.parquet test-artifacts mutants
