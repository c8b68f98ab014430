# rfmbench developer commands. `make install` then `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch is on this machine's disk; a GPU user can `make install TORCH=torch`
# (or install their CUDA build first) and pip keeps it.
TORCH ?= torch==2.13.0

.PHONY: install test test-all test-floors lint reproduce bench clean

# Ray is installed for the tests of the distributed executor (`--executor ray`).
install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,ray]"

test:
	$(BIN)/pytest -q -m "not slow"

test-all:
	$(BIN)/pytest -q

# The fast tests on the lowest versions of the direct dependencies that pyproject.toml allows
# (.ci/floors.py pins them), so a floor below what the code needs fails here, not at a user's.
FLOORS := .venv-floors
test-floors:
	$(PYTHON) -m venv $(FLOORS)
	$(FLOORS)/bin/pip install --quiet "$(TORCH)" packaging "tomli; python_version < '3.11'"
	$(FLOORS)/bin/python .ci/floors.py test > $(FLOORS)/floors.txt
	$(FLOORS)/bin/pip install --quiet -r $(FLOORS)/floors.txt
	$(FLOORS)/bin/pip install --quiet --no-deps -e .
	$(FLOORS)/bin/pip list --format=freeze | grep -iE "^($$(cut -d= -f1 $(FLOORS)/floors.txt | paste -sd'|'))=="
	$(FLOORS)/bin/pytest -q -m "not slow" -p no:cacheprovider

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
	$(BIN)/python benchmarks/rfm_scale.py

clean:
	rm -rf $(VENV) $(FLOORS) .pytest_cache .ruff_cache
