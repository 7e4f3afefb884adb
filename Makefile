# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv on first use; torch is pinned to the CPU build first so
# that no resolver pulls several GB of CUDA packages.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.calibench-installed
TORCH ?= torch==2.13.0

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/calibench demo

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo-out .pytest_cache
