# meshchat developer tasks. Every target creates .venv first, so a fresh clone needs only
# python3 and make (and PostgreSQL's server binaries for `make test`).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

.PHONY: venv
venv: $(STAMP) ## Create .venv and install meshchat with its development tools.

.PHONY: run
run: $(STAMP) ## Start the auth and chat services on the embedded SQLite default (Ctrl-C stops).
	$(BIN)/honcho --procfile Procfile start

.PHONY: proto
proto: $(STAMP) ## Regenerate the Python code in services/meshchat from proto/.
	$(BIN)/python scripts/genproto.py

.PHONY: lint
lint: $(STAMP) ## ruff and mypy --strict.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy services client tests scripts

.PHONY: test
test: lint ## The whole suite: lint, types, unit, both storage backends, deployment checks, end to end.
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: bench
bench: $(STAMP) ## Run the benchmarks and write bench-results/.
	$(BIN)/python -m benchmarks

.PHONY: clean
clean: ## Remove the virtualenv, caches and local data.
	rm -rf $(VENV) .data .cache .pytest_cache .mypy_cache .ruff_cache
