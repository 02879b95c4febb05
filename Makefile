# The README's commands. Each target sets up what it needs first (idempotent, quick when done).
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := $(PYTHON) -m uv
VENV := .venv
CLICKREC := $(VENV)/bin/clickrec
PYTEST_ARGS ?=

.PHONY: demo test setup venv up down status lint bench clean-data

## make demo: set up, start the local stack and run the platform end to end
demo: setup
	$(CLICKREC) demo

## make test: the linters (make lint), then the whole test suite against the real local services
test: lint setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

## make setup: Python environment (locked), Debian packages, Kafka and Spark jars
setup: venv
	$(CLICKREC) setup

venv: $(VENV)/.synced

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen
	@touch $@

up: setup
	$(CLICKREC) up

down:
	$(CLICKREC) down

status:
	$(CLICKREC) status

## make lint: ruff, then mypy (its configuration: [tool.mypy] in pyproject.toml)
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean-data:
	$(CLICKREC) down
	rm -rf data/state data/jars data/lake data/dagster_home data/mlflow-artifacts
