# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv if missing and install the project from its own files.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: mlserver-env install demo test test-unit test-notebooks test-browser chromium postgresql bench clean labextension test-labextension lint

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The demo ends with the quickstart notebook run as a report (its own store under .mlops/,
# so the quickstart's gateway stop leaves the demo's gateway running); it prints the path.
demo: install
	$(VENV)/bin/mlops-jupyter demo
	$(VENV)/bin/mlops-jupyter report notebooks/00-quickstart.ipynb --home .mlops/quickstart --tenant tenant_123 --quiet

# The unit suite and the notebooks both run even when one fails (the exit code says if either did).
test: install test-labextension lint
	@rc=0; $(MAKE) --no-print-directory test-unit || rc=1; $(MAKE) --no-print-directory test-notebooks || rc=1; exit $$rc

# The pure modules' examples run as doctests with the suite.
DOCTESTS := mlops_jupyter/errors.py mlops_jupyter/config mlops_jupyter/registry/semver.py mlops_jupyter/registry/lineage.py \
	mlops_jupyter/deployment/traffic.py mlops_jupyter/deployment/plan.py \
	mlops_jupyter/deployment/targets/kserve.py mlops_jupyter/deployment/targets/ray_serve.py \
	mlops_jupyter/monitoring/drift mlops_jupyter/monitoring/alerts \
	mlops_jupyter/monitoring/windows.py mlops_jupyter/monitoring/performance.py \
	mlops_jupyter/notebook/widgets/comparison_data.py mlops_jupyter/notebook/widgets/comparison_view.py \
	mlops_jupyter/tracking/key_metrics.py mlops_jupyter/monitoring/predlog mlops_jupyter/storage/pg_store.py \
	mlops_jupyter/gateway/cluster.py mlops_jupyter/gateway/metrics.py mlops_jupyter/gateway/balance.py \
	mlops_jupyter/gateway/inline.py

# The suite runs on both cores (pytest-xdist): a file's tests in one worker, tests/team and
# tests/browser each in one worker (tests/conftest.py says why). The gateway's tests (latency
# under attack, micro-batch forming) run after, alone, on an otherwise idle machine.
TEST_WORKERS ?= 2
test-unit: install labextension chromium postgresql mlserver-env
	@rc=0; $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests --ignore=tests/gateway \
	  $(DOCTESTS) --doctest-modules --durations=15 || rc=1; \
	$(PY) -m pytest tests/gateway --durations=5 || rc=1; exit $$rc

# The layering (import-linter contracts in pyproject.toml), lint and formatting. The example
# notebooks are linted too (users copy from them); their cells keep the layout they were written in.
lint: install
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check mlops_jupyter tests benchmarks notebooks
	$(VENV)/bin/ruff format --check mlops_jupyter tests benchmarks

# The browser tests (tests/browser/: the panels and the sidebar in a real JupyterLab) drive
# Debian's chromium through Playwright; Playwright never downloads a browser here. apt needs
# root, as in CI. `make test-browser` runs only them (screenshots in test-artifacts/browser/;
# MLOPS_UPDATE_SCREENSHOTS=1 also refreshes the README's in docs/screenshots/).
chromium:
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

# The team-server tests (tests/team/) start Debian's PostgreSQL in a temp folder (as the
# `postgres` user when run as root) under an `mlflow server`; apt needs root, as in CI.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q postgresql)

test-browser: install labextension chromium
	$(PY) -m pytest tests/browser

# Notebooks run in a fresh store so their outputs do not depend on earlier runs.
test-notebooks: install
	home=$$(mktemp -d) && MLOPS_HOME=$$home $(PY) -m pytest -p no:cacheprovider \
	  --nbval-lax --nbval-current-env notebooks; rc=$$?; rm -rf $$home; exit $$rc

# benchmarks/drift.py compares with Evidently, which needs pandas<3: it runs in a side
# environment made once (the stamp is written only after a complete install).
PEERS := .venv-peers
PEERS_STAMP := $(PEERS)/.installed-stamp

$(PEERS_STAMP):
	$(PYTHON) -m venv $(PEERS) && $(PEERS)/bin/pip install -q 'evidently' 'pandas<3'
	touch $(PEERS_STAMP)

# tests/deployment/test_kserve_target.py serves our stored model with MLServer's MLflow runtime
# (what KServe's kserve-mlserver runtime runs for modelFormat mlflow) in a side environment made
# once (the stamp is written only after a complete install); the pins match .venv's mlflow and
# scikit-learn, so the runtime loads the artifacts our registry stores.
MLSERVER_ENV := .venv-mlserver
MLSERVER_STAMP := $(MLSERVER_ENV)/.installed-stamp

$(MLSERVER_STAMP):
	$(PYTHON) -m venv $(MLSERVER_ENV) && $(MLSERVER_ENV)/bin/pip install -q 'mlserver==1.7.1' \
	  'mlserver-mlflow==1.7.1' 'mlflow==3.17.2' 'scikit-learn==1.9.1'
	touch $(MLSERVER_STAMP)

mlserver-env: $(MLSERVER_STAMP)

bench: install $(PEERS_STAMP)
	@command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	@set -e; for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f; done

clean:
	rm -rf $(VENV) $(PEERS) $(MLSERVER_ENV) .mlops build dist *.egg-info
	rm -rf mlops_jupyter/labextension labextension/lib labextension/node_modules labextension/tsconfig.tsbuildinfo

# The JupyterLab extension (labextension/, TypeScript): built with the venv's jlpm into
# mlops_jupyter/labextension/ (`pip install -e .` builds it too, through hatch-jupyter-builder,
# when it is missing), linked where JupyterLab looks for prebuilt extensions, then checked:
# `jupyter labextension list` shows it enabled, and its data/formatting code passes its tests.
WITH_VENV := PATH="$(abspath $(VENV))/bin:$$PATH"
LABEXT_OUT := mlops_jupyter/labextension/static/style.js
LABEXT_SRC := $(wildcard labextension/package.json labextension/yarn.lock labextension/tsconfig.json \
	labextension/src/*.ts labextension/style/*)

# (make looked at the output before `pip install` may have built it: look again)
$(LABEXT_OUT): $(LABEXT_SRC) | $(STAMP)
	@if [ -f $@ ] && [ -z "$$(find $(LABEXT_SRC) -newer $@)" ]; then echo "labextension: up to date"; \
	else cd labextension && $(WITH_VENV) jlpm install && $(WITH_VENV) jlpm build:prod; fi
	touch $@

labextension: $(LABEXT_OUT) | $(STAMP)
	@$(WITH_VENV) jupyter builder develop --overwrite . >/dev/null

test-labextension: labextension
	@test -f labextension/lib/model.js || (cd labextension && $(WITH_VENV) jlpm install && $(WITH_VENV) jlpm build:lib)
	cd labextension && $(WITH_VENV) jlpm test
	$(WITH_VENV) jupyter labextension list 2>&1 | grep -E "mlops-jupyter v[0-9.]+.*enabled.*OK"
	$(WITH_VENV) jupyter server extension list 2>&1 | grep -E "mlops_jupyter.*enabled"
