# pumphouse — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP_LOCAL := $(VENV)/.installed-local
STAMP_TEST := $(VENV)/.installed-test
STAMP_NODE := node_modules/.installed
# AWS's Node.js runtime interface client, for the tests' Node.js handlers (not for `make run`).
RIC_DIR := tests/handlers/ric_node
STAMP_RIC := $(RIC_DIR)/node_modules/.installed
PYTEST_ARGS ?=

.PHONY: run test lint lint-deploy bench run-deps system-deps lint-deps runtime-client-deps \
	schema clean

## make run: install (venv + .[local]) and run the quickstart on local servers.
## It needs only node (for kinesis-mock): the quickstart keeps its state in SQLite.
run: $(STAMP_LOCAL) run-deps $(STAMP_NODE)
	$(BIN)/pumphouse dev -c examples/quickstart.yaml --produce 5

## make test: install everything the suite uses, then lint, type-check and test.
test: $(STAMP_TEST) system-deps $(STAMP_NODE) $(STAMP_RIC)
	$(MAKE) lint
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP_TEST)
	$(BIN)/ruff check pumphouse tests benchmarks deploy
	$(BIN)/mypy pumphouse
	$(MAKE) lint-deploy

## lint-deploy: hadolint, Helm lint + render + Kubernetes schemas, promtool.
lint-deploy: $(STAMP_TEST) lint-deps
	$(BIN)/hadolint Dockerfile
	$(BIN)/python deploy/helm/lint_chart.py
	promtool check rules deploy/prometheus/alerts.yaml

bench: $(STAMP_TEST) system-deps $(STAMP_NODE) $(STAMP_RIC)
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

# Debian packages (the machine is root; CI too), each target only what its command needs.
# run-deps: node, for kinesis-mock (`make run`).
run-deps:
	@if ! command -v node >/dev/null; then \
	  echo "installing: nodejs npm"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	fi

# system-deps: the servers the test suite starts (redis-server, node).
system-deps: run-deps
	@if ! command -v redis-server >/dev/null; then \
	  echo "installing: redis-server"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	fi

# lint-deps: promtool, for `make lint` (the alert rules).
lint-deps:
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then \
	  echo "installing: prometheus (promtool)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends prometheus >/dev/null; \
	fi

$(STAMP_NODE): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages the tests' runtime processes need: aws-lambda-ric compiles AWS's C++
# runtime library (and curl) when installed; the custom-runtime tests use curl and jq.
runtime-client-deps: system-deps
	@missing=""; \
	for tool in autoconf:autoconf automake:automake libtoolize:libtool cmake:cmake \
	            make:make g++:g++ curl:curl jq:jq; do \
	  command -v $${tool%%:*} >/dev/null || missing="$$missing $${tool##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Its package.json approves aws-lambda-ric's install scripts (the "allowScripts" field that
# `npm install-scripts approve aws-lambda-ric` writes): npm 11 runs no unapproved ones, and
# without them the native binding is never built. Older npm runs them anyway. A binding
# still missing afterwards is built with `npm rebuild`.
$(STAMP_RIC): $(RIC_DIR)/package.json | runtime-client-deps
	cd $(RIC_DIR) && npm install --no-audit --no-fund --loglevel=error
	cd $(RIC_DIR) && test -f node_modules/aws-lambda-ric/dist/rapid-client.node \
	  || npm rebuild aws-lambda-ric
	touch $@

schema: $(STAMP_TEST)
	$(BIN)/python -m pumphouse.config.schema > config/pumphouse.schema.json

clean:
	rm -rf $(VENV) node_modules build dist *.egg-info .mypy_cache .ruff_cache
