# daguerre — set-up, tests, demo and benchmarks. `make test` and `make demo` work from a fresh clone.
SHELL  := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed

.PHONY: install test demo bench constraints clean

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
	$(VENV)/bin/daguerre degrade builtin:samples --recipe old-photo --seed 0 --count 2 \
		--out demo-out/degraded --sheet demo-out/degrade-sheet.png
	DAGUERRE_HOME=demo-out/home $(VENV)/bin/daguerre dataset create demo --source builtin:samples \
		--recipe old-photo --count 96 --size 128 --seed 0 --shard-size 32
	DAGUERRE_HOME=demo-out/home $(VENV)/bin/daguerre dataset show demo --out demo-out/dataset-sheet.png --n 12
	@echo "open demo-out/degrade-sheet.png and demo-out/dataset-sheet.png"

bench: $(STAMP)
	$(PY) bench/degrade_throughput.py
	$(PY) bench/generate_throughput.py
	$(PY) bench/train_throughput.py

constraints: $(STAMP)
	$(PIP) freeze --exclude-editable | sed 's/+cpu$$//' > constraints.tmp && mv constraints.tmp constraints.txt

clean:
	rm -rf demo-out bench/out .pytest_cache
