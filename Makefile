# daguerre — set-up, tests, demo and benchmarks. `make test` and `make demo` work from a fresh clone.
SHELL  := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed

.PHONY: install test demo bench bench-restore train-default constraints clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: the local CPU wheel, never a multi-GB CUDA build.
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PIP) install torch==2.13.0 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PIP) install -c constraints.txt -e '.[test]' 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PY) -c "import torch, zarr, degrade, cli"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# The demo keeps its datasets in demo-out/ rather than ~/.daguerre.
demo: $(STAMP)
	DAGUERRE_HOME=demo-out/home $(VENV)/bin/daguerre demo --out demo-out

# Trains the shipped default bundle on this CPU (hours) and publishes it into zoo/weights.
train-default: $(STAMP)
	zoo/default/train.sh

bench: $(STAMP)
	$(PY) bench/degrade_throughput.py
	$(PY) bench/generate_throughput.py
	$(PY) bench/train_throughput.py

# Restoration quality needs the held-out test datasets that `make train-default` builds.
bench-restore: $(STAMP)
	DAGUERRE_HOME=$${DAGUERRE_HOME:-work/default/home} $(PY) bench/restore_quality.py
	$(PY) bench/restore_speed.py

constraints: $(STAMP)
	$(PIP) freeze --exclude-editable | sed 's/+cpu$$//' > constraints.tmp && mv constraints.tmp constraints.txt

clean:
	rm -rf demo-out bench/out .pytest_cache
