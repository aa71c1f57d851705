# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv if missing and install the project from its own files.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-unit test-notebooks bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/mlops-jupyter demo

test: install test-unit test-notebooks

test-unit: install
	$(PY) -m pytest tests

# Notebooks run in a fresh store so their outputs do not depend on earlier runs.
test-notebooks: install
	home=$$(mktemp -d) && MLOPS_HOME=$$home $(PY) -m pytest -p no:cacheprovider \
	  --nbval-lax --nbval-current-env notebooks; rc=$$?; rm -rf $$home; exit $$rc

bench: install
	@command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	@set -e; for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f; done

clean:
	rm -rf $(VENV) .mlops build dist *.egg-info
