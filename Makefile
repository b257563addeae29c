# The two commands a newcomer needs: `make run` and `make test` (`make demo` needs no API key). Both create .venv on first use.
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

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

# Without XAU_DATABASE_URL, an embedded PostgreSQL (files in .pgdata/) holds the candles and Dagster's storage.
run: $(STAMP)
	$(BIN)/python -m xau_pipeline.launch run

# Offline: the Twelve Data stand-in in-process, three weeks of data filled first, then as `run`.
demo: $(STAMP)
	$(BIN)/python -m xau_pipeline.launch demo

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/upsert_speed.py

standin: $(STAMP)
	$(BIN)/python -m xau_pipeline.twelvedata_standin --port 8765 --api-key demo-key

migrate: $(STAMP)
	$(BIN)/xau-pipeline migrate
