# scanpay-sim: the two commands of the README, and a few more.
# Everything runs from a local virtualenv (.venv) made with the machine's python3.11.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run serve test lint typecheck unit db-tests bench install clean browser-tests flow-browser

$(STAMP): pyproject.toml
	@echo "==> [1/3] creating the virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> [2/3] upgrading pip"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "==> [3/3] installing scanpay-sim with its test tools (about a minute the first time)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)
	@echo "==> installed; later runs skip this until pyproject.toml changes"

install: $(STAMP)

## run: install, then certify the embedded sims (the whole catalogue; reports in ./reports)
run: $(STAMP)
	$(BIN)/scanpay certify

## serve: install, then serve the sims on 127.0.0.1 (SQLite under ./data) until Ctrl-C
serve: $(STAMP)
	$(BIN)/scanpay serve

## test: install, then lint, type-check and run the whole test suite
test: $(STAMP) lint typecheck unit

## lint: ruff, then the dead-code check (vulture: [tool.vulture] in pyproject.toml, and
## vulture_whitelist.py for the names only a framework, a template or a test uses)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/vulture

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

## db-tests: the database-backed tests only (CI runs them again on PostgreSQL)
db-tests: $(STAMP)
	$(BIN)/pytest -q -m db

## browser-tests: the real-browser tests only (Debian chromium + chromium-driver; skipped without)
browser-tests: $(STAMP)
	$(BIN)/pytest -q -m browser tests/browser

## flow-browser: one scan-then-pay in headless Chromium, screenshots in reports/flow-browser
flow-browser: $(STAMP)
	$(BIN)/scanpay flow --browser

## bench: every benchmark, ratios against references of the same run (bench/README.md);
## results in bench/results/. Longer runs: make bench BENCH_ARGS="--duration 30"
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## load-soak: the soak of loadtests/README.md, run by hand (not in `make test`): both sims under
## granian on scratch PostgreSQL databases, 50 Locust users for 10 minutes, RSS sampled;
## PASS/FAIL and results in load-results/soak. Shorter: make load-soak SOAK_ARGS="--minutes 1"
.PHONY: load-soak
load-soak: $(STAMP)
	$(BIN)/python -m loadtests.soak $(SOAK_ARGS)

## soak: the extended reliability tier of docs/reliability.md, run by hand (not in `make test`):
## 200 kill -9 cycles x 50 fundings in flight, then 10,000 fundings x 50 seeds of network
## faults, exactly-once checked throughout. Smaller: make soak SOAK_RELIABILITY_ARGS="--cycles 12"
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python -m tests.reliability.soak $(SOAK_RELIABILITY_ARGS)

## mutation: mutation testing of the money modules with mutmut 3 (setup.cfg names the modules
## and the tests; docs/reliability.md has the scores and every surviving mutant). All 3,555
## mutants take about three hours on 2 cores (10 to 25 a minute): name some, e.g.
## make mutation MUTANTS='sim_cms.limits.x_used_on*', then .venv/bin/mutmut results (the
## survivors) and .venv/bin/mutmut show NAME (a diff). PostgreSQL-only functions need
## SCANPAY_TEST_DATABASE_URL set (docs/reliability.md).
.PHONY: mutation
mutation: $(STAMP)
	$(BIN)/python -m pip install --quiet "mutmut==3.8.1"
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)

clean:
	rm -rf $(VENV) data reports .pytest_cache .mypy_cache .ruff_cache
