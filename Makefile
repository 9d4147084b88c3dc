# pumphouse — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP_LOCAL := $(VENV)/.installed-local
STAMP_TEST := $(VENV)/.installed-test
STAMP_NODE := node_modules/.installed
PYTEST_ARGS ?=

.PHONY: run test lint lint-deploy bench system-deps schema clean

## make run: install (venv + .[local]) and run the quickstart on local servers.
run: $(STAMP_LOCAL) system-deps $(STAMP_NODE)
	$(BIN)/pumphouse dev -c examples/quickstart.yaml --produce 5

## make test: install everything the suite uses, then lint, type-check and test.
test: $(STAMP_TEST) system-deps $(STAMP_NODE)
	$(MAKE) lint
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP_TEST)
	$(BIN)/ruff check pumphouse tests benchmarks deploy
	$(BIN)/mypy pumphouse
	$(MAKE) lint-deploy

## lint-deploy: hadolint, Helm lint + render + Kubernetes schemas, promtool.
lint-deploy: $(STAMP_TEST) system-deps
	$(BIN)/hadolint Dockerfile
	$(BIN)/python deploy/helm/lint_chart.py
	promtool check rules deploy/prometheus/alerts.yaml

bench: $(STAMP_TEST) system-deps $(STAMP_NODE)
	@for b in benchmarks/*.py; do echo "=== $$b"; $(BIN)/python $$b || exit 1; done

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP_LOCAL): pyproject.toml $(VENV)/bin/python
	$(PIP) install --quiet -e '.[local]'
	touch $@

$(STAMP_TEST): pyproject.toml $(VENV)/bin/python
	$(PIP) install --quiet -e '.[local,test]'
	touch $(STAMP_LOCAL) $@

# Debian packages the servers and checks need (the machine is root; CI too).
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v node >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then \
	  echo "installing: prometheus (promtool)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends prometheus >/dev/null; \
	fi

$(STAMP_NODE): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

schema: $(STAMP_TEST)
	$(BIN)/python -m pumphouse.config.schema > config/pumphouse.schema.json

clean:
	rm -rf $(VENV) node_modules build dist *.egg-info .mypy_cache .ruff_cache
