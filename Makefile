# One command per job; see README.md. Python 3.11 only: uv must never download another.
export UV_PYTHON := 3.11
export UV_PYTHON_DOWNLOADS := never
export PATH := $(HOME)/.local/bin:$(PATH)

# Every package of this checkout, libraries first: the folders with a pyproject.toml (the
# services are the ones deploy/platform.toml lists; tests/deploy/test_layout.py checks that).
PRESENT := $(patsubst %/pyproject.toml,%,$(wildcard libs/*/pyproject.toml) $(wildcard services/*/pyproject.toml))

.PHONY: help setup lint format test test-reliability up down logs status demo bench asyncapi pin
.PHONY: node-deps local-servers env-example mypy images test-containers test-fresh-box
.DEFAULT_GOAL := help

# A bare `make` lists the targets: the `## ` text after each target's name.
help:
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --compile-bytecode: machines here set PYTHONDONTWRITEBYTECODE, so without it every process
# (service, CLI, test run) compiles its libraries again: ~2.5 s instead of ~1 s per start.
setup: ## install uv (if missing) and every package into .venv
	scripts/ensure-uv
	uv sync --all-packages --quiet --compile-bytecode

lint: setup ## ruff check, ruff format --check, mypy --strict per package
	uv run ruff check .
	uv run ruff format --check .
	@$(MAKE) --no-print-directory mypy

mypy: ## mypy --strict, package by package (as make lint runs it)
	@for pkg in $(PRESENT); do \
	  echo "mypy $$pkg"; \
	  (cd $$pkg && MYPYPATH=src uv run mypy --config-file $(CURDIR)/pyproject.toml src $$( [ -d tests ] && echo tests )) || exit 1; \
	done
	MYPYPATH=deploy/local:tests uv run mypy --config-file pyproject.toml deploy/local tests scripts
	MYPYPATH=bench uv run mypy --config-file pyproject.toml bench

format: ## ruff fix and format
	uv run ruff check --fix .
	uv run ruff format .

# Every package's own tests (each alone, the way it is built and deployed), then end-to-end.
test: setup node-deps local-servers ## every package's tests (with coverage), then deployment, docs and end to end
	@rm -f .coverage
	@for pkg in $(PRESENT); do \
	  echo "== $$pkg"; \
	  (cd $$pkg && COVERAGE_FILE=$(CURDIR)/.coverage uv run coverage run --rcfile=$(CURDIR)/pyproject.toml --append --source=src -m pytest -q) || exit 1; \
	done
	@echo "== coverage of the packages by their own tests: $$(uv run coverage report --rcfile=pyproject.toml --format=total)% (uv run coverage report: per file)"
	@echo "== tests (deployment files, observability rules, the platform end to end)"
	cd tests && uv run pytest -q

# Platform-wide faults, load, poison, fuzzing and security, including the scenarios that restart
# the shared broker and database (plain `make test` skips those two). Writes reliability/report.md.
test-reliability: setup ## faults, load, poison, fuzzing (restarts the shared servers)
	cd tests && RELIABILITY_DISRUPTIVE=1 uv run pytest -q reliability

asyncapi: setup ## regenerate docs/asyncapi.yaml from the code
	uv run python scripts/asyncapi.py > docs/asyncapi.yaml

# The whole platform in the background on this machine (deploy/local/platformctl.py says how).
up: setup ## run the whole platform in the background (gateway on :8080)
	uv run --no-sync python deploy/local/platformctl.py up

down: ## stop what make up started
	uv run --no-sync python deploy/local/platformctl.py down

logs: ## follow every process's log
	uv run --no-sync python deploy/local/platformctl.py logs

status: ## each process: running, ready
	uv run --no-sync python deploy/local/platformctl.py status

# A seller, a customer, a recipe with a photo and a rating, through the gateway (after make up).
demo: ## a seller, a customer, a recipe and a rating through the gateway
	uv run --no-sync python scripts/demo.py

# Benchmarks (not part of `make test`): every hot path against a ceiling measured in the same
# run. SCENARIO="recipe-list ratings" runs some; QUICK=1 is smaller (~3 min). See bench/README.md.
bench: setup ## benchmarks against ceilings measured in the same run
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk nginx)
	@scripts/ensure-infra
	uv run python bench/run.py $(if $(QUICK),--quick) $(SCENARIO)

# Re-pin every direct and transitive version after changing a dependency.
pin: ## re-pin every version after changing a dependency
	uv sync --all-packages --quiet
	uv run python scripts/pin.py

# The node validators tests run (the AsyncAPI parser; the custom resources' schemas); those
# tests are skipped where node is missing.
NODE_DIRS := tests/docs/asyncapi tests/deploy/k8s-models
node-deps:
	@for dir in $(NODE_DIRS); do \
	  if command -v npm >/dev/null 2>&1 && [ ! -d $$dir/node_modules ]; then \
	    echo "npm ci in $$dir"; \
	    (cd $$dir && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	  fi; \
	done

# The local PostgreSQL and RabbitMQ (management API included) that tests and benchmarks fall back
# to, started or installed where missing, as `make up` does: on a fresh machine `make test` alone
# must pass. Skipped when the tests may only use containers; where a Docker engine may serve
# them instead (TESTS_USE_DOCKER unset or auto), a failure here is only a warning.
local-servers:
	@case "$${TESTS_USE_DOCKER:-auto}" in \
	  always) ;; \
	  never) scripts/ensure-infra ;; \
	  *) scripts/ensure-infra || echo "local-servers: not started; the tests need a Docker engine then" ;; \
	esac

env-example: setup ## regenerate .env.example from the settings classes
	uv run python scripts/settings_table.py --env-example > .env.example

# --- Containers (scripts/ensure-docker says which engine and images) ---------------------------
# Needs a Docker engine, or root with apt to start one of its own (stopped again at the end).
# The five service images from the one Dockerfile.
images: ## build the five service images (starts a Docker engine if none runs)
	@eval "$$(scripts/ensure-docker)" && scripts/build-images

# The container checks alone: the images built, each started alone (migrate, /healthz, /readyz),
# and the compose stack in production mode with the recipe story through its gateway.
test-containers: setup ## the container checks alone: images, each started alone, the compose stack
	@PLATFORM_DOCKER_STARTED=0; trap '[ "$$PLATFORM_DOCKER_STARTED" = 0 ] || $(CURDIR)/scripts/ensure-docker stop' EXIT; \
	eval "$$(scripts/ensure-docker)" || exit 1; \
	scripts/build-images && cd tests && uv run pytest -q containers

# A fresh Debian bookworm container with nothing but this checkout runs the README's two
# commands (scripts/fresh-box says which parts of `make test` run there).
test-fresh-box: ## a clean Debian bookworm container runs the README's two commands
	@PLATFORM_DOCKER_STARTED=0; trap '[ "$$PLATFORM_DOCKER_STARTED" = 0 ] || $(CURDIR)/scripts/ensure-docker stop' EXIT; \
	eval "$$(scripts/ensure-docker)" || exit 1; \
	scripts/fresh-box
