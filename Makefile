# Two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench calibration clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[fast,dev]'
	touch $@

demo: $(VENV)/.installed  ## set up, then reconcile the embedded example
	$(VENV)/bin/estimates demo

test: $(VENV)/.installed  ## set up, then run the whole test suite
	$(PY) -m pytest

$(VENV)/.bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

bench: $(VENV)/.bench  ## speed benchmark against hand-written Stan and numpyro (about an hour on 2 cores)
	$(PY) benchmarks/run.py

calibration: $(VENV)/.installed  ## calibration study: 300 simulated problems, writes docs/calibration-results.md
	$(PY) benchmarks/calibration.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
