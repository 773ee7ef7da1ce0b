# Two commands matter: `make run` and `make test`.  Each does whatever setup is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
IGNITE_NODES ?= 1

.PHONY: run test setup stack stack-down lint typecheck unit bench clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed

stack: setup
	$(PY) -m stack up --ignite-nodes $(IGNITE_NODES)

stack-down: setup
	$(PY) -m stack down

run: stack
	$(PY) -m app serve

lint: setup
	$(VENV)/bin/ruff check app drivers stack tests bench

typecheck: setup
	$(VENV)/bin/mypy

# The suite needs the three-node Ignite cluster.  pytest exits 5 when it collected no
# test: that is a broken setup, not a pass.
test: lint typecheck
	$(MAKE) --no-print-directory stack IGNITE_NODES=3
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

# The load-test suite (wrk, the /now probe, locust) against this project and the designs it replaces;
# about 13 minutes on 2 cores (bench-quick: about 4).  Results in bench/results/bench.{json,md} and PNGs.
bench: setup
	$(PY) -m bench --locust $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: setup
	$(PY) -m bench --quick --locust $(BENCH_ARGS)

clean: stack-down
	rm -rf .stack
