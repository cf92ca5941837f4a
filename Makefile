# Set up with `make setup`; test with `make test` (SLOW=1 adds the full-size architecture tests).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_MARK := $(if $(SLOW),-m "slow or not slow",)

.PHONY: setup serve system-packages test lint

# Programs the corpus generator runs (GPL or BSD-style; used as separate processes only); Debian/Ubuntu, as root.
# Festival's voices are data packages with no program of their own: checked by their folders.
FESTIVAL_VOICE_DIRS = /usr/share/festival/voices/english/ked_diphone /usr/share/festival/voices/english/kal_diphone \
	/usr/share/festival/voices/us/cmu_us_slt_arctic_hts
system-packages:
	command -v espeak-ng >/dev/null && command -v sox >/dev/null && command -v bible >/dev/null && \
		command -v flite >/dev/null && command -v text2wave >/dev/null && ls -d $(FESTIVAL_VOICE_DIRS) >/dev/null || \
		(apt-get update -q && apt-get install -y -q espeak-ng sox bible-kjv flite festival \
			festvox-kdlpc16k festvox-kallpc16k festvox-us-slt-hts)

setup: $(VENV)/.installed

# torch first, pinned: its CPU build is what `torch==2.13.0` resolves to here; unpinned, pip pulls CUDA.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3.11 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[nemo,dev,corpus,distill,lm]"
	touch $@

serve: setup
	$(VENV)/bin/qasr serve

lint: setup
	$(VENV)/bin/ruff check quantizer training app tests benchmarks
	$(VENV)/bin/ruff format --check quantizer training app tests benchmarks

test: lint
	$(VENV)/bin/pytest $(PYTEST_MARK)
