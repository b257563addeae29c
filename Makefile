# The two commands a newcomer needs: `make run` and `make test` (`make demo` needs no API key).
# Each creates .venv and installs the project on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# Large backfills: batch Dagster's per-partition bookkeeping (see docs/architecture.md).
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= 1
export DAGSTER_EVENT_BATCH_SIZE ?= 1000

.PHONY: install run demo test bench standin migrate

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Without XAU_DATABASE_URL, an embedded PostgreSQL (files in .pgdata/) holds the candles and Dagster's storage.
run: $(STAMP)
	$(BIN)/python -m xau_pipeline.launch run

# Offline: the Twelve Data stand-in in-process, three weeks of data filled first, then as `run`.
demo: $(STAMP)
	$(BIN)/python -m xau_pipeline.launch demo

test: $(STAMP)
	$(BIN)/pytest

# Each benchmark prints its figures; rate_limited_backfill.py takes about 3 minutes (8 calls a minute).
bench: $(STAMP)
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/upsert_speed.py
	$(BIN)/python bench/gap_query.py
	$(BIN)/python bench/live_cost.py
	$(BIN)/python bench/rate_limited_backfill.py

standin: $(STAMP)
	$(BIN)/python -m xau_pipeline.twelvedata_standin --port 8765 --api-key demo-key

migrate: $(STAMP)
	$(BIN)/xau-pipeline migrate
