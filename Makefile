# rfmbench developer commands. `make install` then `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch is on this machine's disk; a GPU user can `make install TORCH=torch`
# (or install their CUDA build first) and pip keeps it.
TORCH ?= torch==2.13.0

.PHONY: install test test-all lint reproduce bench clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"

test:
	$(BIN)/pytest -q -m "not slow"

test-all:
	$(BIN)/pytest -q

lint:
	$(BIN)/ruff check rfmbench tests benchmarks
	$(BIN)/ruff format --check rfmbench tests benchmarks

# Fixed-seed benchmark compared with results/reproduce.csv; UPDATE=1 rewrites that reference.
reproduce:
	$(BIN)/python benchmarks/reproduce.py $(if $(UPDATE),--update)

# Benchmarks print measured figures side by side with their reference (xrfm, scikit-learn
# defaults, --jobs 1); they take tens of minutes on 2 cores and are not part of CI.
bench:
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/rfm_vs_xrfm.py --uci ../shared/datasets/uci121-sample
	$(BIN)/python benchmarks/paper_vs_xrfm.py --uci ../shared/datasets/uci121-sample
	$(BIN)/python benchmarks/baselines.py
	$(BIN)/python benchmarks/executors.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
