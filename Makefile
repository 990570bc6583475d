# Two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test unit docs lint bench calibration clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[fast,dev,docs]'
	touch $@

demo: $(VENV)/.installed  ## set up, then reconcile the embedded example
	$(VENV)/bin/estimates demo

test: $(VENV)/.installed  ## set up, run the whole test suite, then execute the notebooks and build the docs
	$(PY) -m pytest
	$(MAKE) docs

unit: $(VENV)/.installed  ## the tests that never sample (seconds)
	$(PY) -m pytest -m "not slow" -q

docs: $(VENV)/.installed  ## build the site into docs/_build/html, executing the notebooks; any warning fails
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

$(VENV)/.bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

bench: $(VENV)/.bench  ## speed benchmark against hand-written Stan and numpyro (about an hour on 2 cores)
	$(PY) benchmarks/run.py

calibration: $(VENV)/.installed  ## calibration study: 300 simulated problems, writes docs/calibration-results.md
	$(PY) benchmarks/calibration.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks scripts conftest.py docs/conf.py
	$(VENV)/bin/ruff format --check src tests benchmarks scripts conftest.py docs/conf.py

clean:
	rm -rf $(VENV) .pytest_cache docs/_build docs/_generated docs/jupyter_execute
