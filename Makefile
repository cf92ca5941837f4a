# Set up with `make setup`; test with `make test` (SLOW=1 adds the full-size architecture tests).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_MARK := $(if $(SLOW),-m "slow or not slow",)

.PHONY: setup test lint

setup: $(VENV)/.installed

# torch first, pinned: its CPU build is what `torch==2.13.0` resolves to here; unpinned, pip pulls CUDA.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3.11 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[nemo,dev]"
	touch $@

lint: setup
	$(VENV)/bin/ruff check quantizer training tests benchmarks
	$(VENV)/bin/ruff format --check quantizer training tests benchmarks

test: lint
	$(VENV)/bin/pytest $(PYTEST_MARK)
