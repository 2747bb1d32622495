# Developer and CI entry points. Each target bootstraps its own venv in .venv.
#   make run  [ARGS="--port 8000"]     make test [PYTEST_ARGS="-m 'not e2e'"]     make test-quick
# Both test targets run the type checker first (mypy, settings in pyproject.toml).

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TEST_WORKERS ?= 2
BENCH_SCRIPTS := $(sort $(wildcard bench/*.py))

.DEFAULT_GOAL := help
.PHONY: help venv run test test-quick bench soak clean FORCE

help:
	@echo "make run     start the broker in dev mode (.venv/bin/broker dev \$$ARGS)"
	@echo "make test    ruff, mypy, then the test suite: in-process tests on \$$TEST_WORKERS workers (2), then e2e"
	@echo "            (installs PostgreSQL if missing; \$$PYTEST_ARGS runs one plain pytest with them instead)"
	@echo "make test-quick  mypy, then unit, flow and storage conformance tests on SQLite only, for the edit loop (\$$PYTEST_ARGS)"
	@echo "make bench   run every bench/*.py script in order"
	@echo "make soak    10 minutes of mixed load on broker serve --workers 2 (\$$SOAK_ARGS, e.g. --minutes 3)"
	@echo "make clean   remove .venv, var/, caches and tests/artifacts"
	@echo "make venv    (re)build .venv when missing, broken or older than pyproject.toml"

venv: $(STAMP)

# The stamp is rebuilt when pyproject.toml changes, when it is missing, and
# (checked here, on every run) when the venv's interpreter no longer starts.
ifneq ($(shell $(VPY) -c 'print("ok")' 2>/dev/null),ok)
$(STAMP): FORCE
endif

$(STAMP): pyproject.toml
	@if ! $(VPY) -m pip --version >/dev/null 2>&1; then \
		echo "creating $(VENV) with $(PYTHON)"; \
		$(PYTHON) -m venv --clear $(VENV); \
	fi
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	@touch $@

run: $(STAMP)
	exec $(VENV)/bin/broker dev $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/mypy
	bash tests/support/ensure-postgres.sh
	bash tests/support/ensure-chromium.sh
	@if [ -f tests/support/oidc_provider/package.json ]; then npm ci --prefix tests/support/oidc_provider --no-audit --no-fund --loglevel=error </dev/null >/dev/null; fi
	TEST_WORKERS=$(TEST_WORKERS) bash tests/support/run-suite.sh $(VPY) $(PYTEST_ARGS)

# The edit loop: no e2e tests, no PostgreSQL, no browser, one pytest worker per core (CI runs `make test`).
test-quick: $(STAMP)
	$(VENV)/bin/mypy
	TEST_STORES=sqlite TEST_QUICK=1 $(VPY) -m pytest tests/unit tests/flows tests/conformance -m "not e2e" -q -n auto $(PYTEST_ARGS) \
		|| { status=$$?; [ $$status -ne 5 ] || echo "make test-quick: pytest collected no tests" >&2; exit $$status; }

# bench/run_all.py runs every bench script, then the issue 9 load runs (bench/load_runs.py; needs node
# and the OIDC provider's npm packages for the peer). BENCH_ARGS="--quick" for a smoke run; other
# options go to load_runs.py, e.g. BENCH_ARGS="--scenarios refresh --stores sqlite".
bench: $(STAMP)
	bash tests/support/ensure-postgres.sh
	@if [ -f tests/support/oidc_provider/package.json ] && [ ! -d tests/support/oidc_provider/node_modules/oidc-provider ]; then npm ci --prefix tests/support/oidc_provider --no-audit --no-fund --loglevel=error </dev/null >/dev/null; fi
	$(VPY) bench/run_all.py $(BENCH_ARGS)

# bench/soak.py: `broker serve --workers 2` on PostgreSQL under a paced mixed load, a row per minute, and a
# verdict (memory flat, no errors, p99 stable); exits 1 when it fails. SOAK_ARGS="--minutes 3 --store sqlite".
soak: $(STAMP)
	bash tests/support/ensure-postgres.sh
	$(VPY) bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var tests/artifacts .pytest_cache .mypy_cache .ruff_cache .coverage build dist *.egg-info
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
