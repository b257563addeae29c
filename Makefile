# The two commands a newcomer needs: `make run` and `make test` (`make demo` needs no API key).
# Each creates .venv and installs the project on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install run demo test test-fast lint bench standin migrate constraints calendar-table

# constraints.txt pins every third-party package (regenerate with `make constraints`).
$(STAMP): setup.py pyproject.toml devtools/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]' -e ./devtools
	touch $(STAMP)

install: $(STAMP)

# Without XAU_DATABASE_URL, an embedded PostgreSQL (files in .pgdata/) holds the candles and Dagster's storage.
run: $(STAMP)
	$(BIN)/python -m xau_pipeline_dev.launch run

# Offline: the Twelve Data stand-in in-process, three weeks of data filled first, then as `run`.
demo: $(STAMP)
	$(BIN)/python -m xau_pipeline_dev.launch demo

# One worker per core, each test file on one worker (its module fixtures set up once), files
# with slow tests started first (conftest.py).
test: $(STAMP)
	$(BIN)/pytest -n auto --dist loadfile

# The inner loop: everything but the slow, process and browser tests (under a minute).
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow and not process and not browser"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Each benchmark prints its figures; rate_limited_backfill.py takes about 3 minutes (8 calls a minute).
bench: $(STAMP)
	$(BIN)/python bench/run_shape.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/upsert_speed.py
	$(BIN)/python bench/gap_query.py
	$(BIN)/python bench/grid_fidelity.py
	$(BIN)/python bench/live_cost.py
	$(BIN)/python bench/rate_limited_backfill.py
	$(BIN)/python bench/api_latency.py

# The key it accepts comes from TWELVE_DATA_API_KEY (demo-key when unset), never from the command line.
standin: $(STAMP)
	$(BIN)/python -m xau_pipeline_dev.twelvedata_standin --port 8765

migrate: $(STAMP)
	$(BIN)/xau-pipeline migrate

# Re-pin: resolve the newest allowed versions in a scratch venv and write them down.
constraints:
	rm -rf $(VENV)-pin
	$(PYTHON) -m venv $(VENV)-pin
	$(VENV)-pin/bin/python -m pip install --quiet --upgrade pip
	$(VENV)-pin/bin/python -m pip install --quiet -e '.[dev]' -e ./devtools
	$(VENV)-pin/bin/python -m pip freeze --all --exclude-editable | grep -v '^pip==' > constraints.txt
	rm -rf $(VENV)-pin

# cme_gold's stored sessions (xau_pipeline/market/cme_gold_sessions.npz), after a pandas_market_calendars
# upgrade or a change to calendar_overrides.py (test_trading_calendar.py says when).
calendar-table: $(STAMP)
	$(BIN)/python -c "from xau_pipeline.market.market_hours import write_cme_table; write_cme_table()"
