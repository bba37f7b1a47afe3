# One entry point for humans. Every target installs what it needs first (uv, then the locked env).
# uv comes from PyPI when missing: `python3 -m pip install uv`, then run as `python3 -m uv`.
UV := $(shell command -v uv 2>/dev/null || (python3 -m uv --version >/dev/null 2>&1 && echo python3 -m uv))
ifeq ($(strip $(UV)),)
UV := python3 -m uv
NEED_UV := 1
endif

# Dagster instance for the demo and the UI: SQLite under .dagster, configured by ./dagster.yaml
# (linked in). Tests use throwaway instances of their own.
DAGSTER_HOME ?= $(CURDIR)/.dagster
# Dagster run-time switches that cut per-partition bookkeeping (whop_pipeline/orchestration/runtime.py);
# exported so the daemon, the webserver and the runs they start all see them.
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= 1
export DAGSTER_EVENT_BATCH_SIZE ?= 1000

.PHONY: install home demo test dev check lint format bench sandbox clean

install:
ifdef NEED_UV
	python3 -m pip install --quiet uv
endif
	$(UV) sync --frozen

# Link ./dagster.yaml into the instance folder, unless that folder already has its own config.
home:
	mkdir -p $(DAGSTER_HOME)
	test -e $(DAGSTER_HOME)/dagster.yaml || ln -s $(CURDIR)/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

## demo: sandbox servers + full sync + webhooks, then print what landed in the CRM
demo: install home
	DAGSTER_HOME=$(DAGSTER_HOME) $(UV) run --frozen whop-pipeline demo

## test: the whole suite (Postgres tests need 127.0.0.1:5432; with CI=true they must run)
test: install
	$(UV) run --frozen pytest

## dev: the Dagster UI and daemon on http://127.0.0.1:3000
dev: install home
	DAGSTER_HOME=$(DAGSTER_HOME) $(UV) run --frozen dg dev

check: install
	$(UV) run --frozen dg check defs

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen lint-imports

format: install
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

## bench: every benchmark against the sandbox (large dataset; takes minutes)
bench: install
	$(UV) run --frozen python -m benchmarks

sandbox: install
	$(UV) run --frozen whop-pipeline sandbox --dataset small

clean:
	rm -rf .dagster data .pytest_cache .ruff_cache
