# Quick start: `make run` (set up, then train the default experiment), `make test` (set up, then test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch==2.13.0 is the pinned CPU build used for development and CI; GPU users install their CUDA
# build of torch first (any version pyproject.toml admits) and the set-up keeps it.
TORCH ?= torch==2.13.0

.PHONY: setup run test test-slow lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

run: setup
	$(BIN)/pinnrun $(ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) outputs multirun mlruns mlartifacts mlflow.db mlflow.lock
