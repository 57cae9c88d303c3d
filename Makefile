# The two commands a new user runs: `make demo` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Two pytest workers, each taking whole test files (module fixtures such as the Slurm cluster stay in one
# process), handed out in the collection order of tests/conftest.py (the longest files first); the
# end-to-end tests spend much of their time in subprocess start-up and imports, so two workers on two
# cores cut the wall time. TEST_WORKERS= runs the suite in one process.
TEST_WORKERS ?= -n 2 --dist loadfile --no-loadscope-reorder

.PHONY: help venv test lint format demo bench clean

help:
	@echo "make demo   - run the whole study on the embedded synthetic cohort (demo_out/)"
	@echo "make test   - lint (ruff) and run the test suite (pytest), slow tests included"
	@echo "make bench  - run the benchmarks in bench/ and print their ratios"

# torch/torchvision are pinned together in constraints.txt: an unpinned install swaps torch for a
# build whose torchvision import fails, and nnU-Net's trainer look-up imports torchvision.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	$(BIN)/python -c "import torch, torchvision, nnunetv2, SimpleITK, medpy, pydicom; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest $(TEST_WORKERS) $(PYTEST_ARGS)

demo: venv
	$(BIN)/recur demo

bench: venv
	for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) demo_out recur_reports .pytest_cache .ruff_cache
