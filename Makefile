# One command per job; see README.md. Python 3.11 only: uv must never download another.
export UV_PYTHON := 3.11
export UV_PYTHON_DOWNLOADS := never
export PATH := $(HOME)/.local/bin:$(PATH)

SERVICES := auth recipes media notifier backup
LIBS := contracts servicekit
PACKAGES := $(addprefix libs/,$(LIBS)) $(addprefix services/,$(SERVICES))
# Packages present in this checkout (a service may not exist yet while it is being built).
PRESENT := $(wildcard $(PACKAGES))

.PHONY: setup lint format test test-reliability up down logs status demo bench asyncapi pin
.PHONY: images test-containers test-fresh-box

# --compile-bytecode: machines here set PYTHONDONTWRITEBYTECODE, so without it every process
# (service, CLI, test run) compiles its libraries again: ~2.5 s instead of ~1 s per start.
setup:
	scripts/ensure-uv
	uv sync --all-packages --quiet --compile-bytecode

lint: setup
	uv run ruff check .
	uv run ruff format --check .
	@for pkg in $(PRESENT); do \
	  echo "mypy $$pkg"; \
	  (cd $$pkg && MYPYPATH=src uv run mypy --config-file $(CURDIR)/pyproject.toml src $$( [ -d tests ] && echo tests )) || exit 1; \
	done
	MYPYPATH=deploy/local:tests uv run mypy --config-file pyproject.toml deploy/local tests scripts
	MYPYPATH=bench uv run mypy --config-file pyproject.toml bench

format:
	uv run ruff check --fix .
	uv run ruff format .

# Every package's own tests (each alone, the way it is built and deployed), then end-to-end.
test: setup
	@for pkg in $(PRESENT); do \
	  echo "== $$pkg"; \
	  (cd $$pkg && uv run pytest -q) || exit 1; \
	done
	@echo "== tests (deployment files, observability rules, the platform end to end)"
	cd tests && uv run pytest -q

# Platform-wide faults, load, poison, fuzzing and security, including the scenarios that restart
# the shared broker and database (plain `make test` skips those two). Writes reliability/report.md.
test-reliability: setup
	cd tests && RELIABILITY_DISRUPTIVE=1 uv run pytest -q reliability

asyncapi: setup
	uv run python scripts/asyncapi.py > docs/asyncapi.yaml

# The whole platform in the background on this machine (deploy/local/platformctl.py says how).
up: setup
	uv run --no-sync python deploy/local/platformctl.py up

down:
	uv run --no-sync python deploy/local/platformctl.py down

logs:
	uv run --no-sync python deploy/local/platformctl.py logs

status:
	uv run --no-sync python deploy/local/platformctl.py status

# A seller, a customer, a recipe with a photo and a rating, through the gateway (after make up).
demo:
	uv run --no-sync python scripts/demo.py

# Benchmarks (not part of `make test`): every hot path against a ceiling measured in the same
# run. SCENARIO="recipe-list ratings" runs some; QUICK=1 is smaller (~3 min). See bench/README.md.
bench: setup
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk nginx)
	uv run python bench/run.py $(if $(QUICK),--quick) $(SCENARIO)

# Re-pin every direct and transitive version after changing a dependency.
pin:
	uv sync --all-packages --quiet
	uv run python scripts/pin.py

# --- Containers (scripts/ensure-docker says which engine and images) ---------------------------
# Needs a Docker engine, or root with apt to start one of its own (stopped again at the end).
# The five service images from the one Dockerfile.
images:
	@eval "$$(scripts/ensure-docker)" && scripts/build-images

# The container checks alone: the images built, each started alone (migrate, /healthz, /readyz),
# and the compose stack in production mode with the recipe story through its gateway.
test-containers: setup
	@PLATFORM_DOCKER_STARTED=0; trap '[ "$$PLATFORM_DOCKER_STARTED" = 0 ] || scripts/ensure-docker stop' EXIT; \
	eval "$$(scripts/ensure-docker)" || exit 1; \
	scripts/build-images && cd tests && uv run pytest -q containers

# A fresh Debian bookworm container with nothing but this checkout runs the README's two
# commands (scripts/fresh-box says which parts of `make test` run there).
test-fresh-box:
	@PLATFORM_DOCKER_STARTED=0; trap '[ "$$PLATFORM_DOCKER_STARTED" = 0 ] || scripts/ensure-docker stop' EXIT; \
	eval "$$(scripts/ensure-docker)" || exit 1; \
	scripts/fresh-box
