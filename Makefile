# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv on first use and install the exact versions of
# requirements.lock (pip constraints), so a new release of a dependency cannot
# change what a fresh clone runs; `make lock` refreshes the lock on purpose.
# The lock pins torch to the CPU build that these machines carry, so that no
# resolver pulls several GB of CUDA packages. `make install TORCH=cuda` installs
# requirements-cuda.lock instead: the same pins with the CUDA build of torch
# (from the default registry) and the CUDA libraries it brings.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= cpu
ifeq ($(TORCH),cpu)
LOCK := requirements.lock
else ifeq ($(TORCH),cuda)
LOCK := requirements-cuda.lock
else
$(error TORCH must be cpu or cuda, got '$(TORCH)')
endif
STAMP := $(VENV)/.calibench-installed-$(TORCH)
PIP := $(BIN)/python -m pip install --quiet --constraint $(LOCK)
# worker processes for the demo study: single-threaded workers, one per core, are fastest on CPU
JOBS ?= 2
# pytest-xdist workers for the test suite: tests are mostly single-threaded, one worker per core
TEST_JOBS ?= 2

.PHONY: install demo test lint docs lock lock-cuda bench clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) pip setuptools
	$(PIP) torch
	$(PIP) --no-build-isolation -e '.[dev]'
	$(BIN)/python tools/lock.py check --lock $(LOCK)
	touch $(STAMP)

install: $(STAMP)

# The main job, `calibench demo`: a calibration-data study on the bundled SmolLM2 (see examples/demo-study.yaml).
# Rerunning resumes: finished cells are skipped.
demo: install
	$(BIN)/calibench demo --out demo-study --jobs $(JOBS)

test: install
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist load

# Style, types and the layer contract (pyproject.toml); CI runs it before the tests.
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# The documentation site (mkdocs.yml, docs/) into site/; strict: a broken link, a page missing from the nav
# or any other warning fails it. The CLI reference is generated from the commands (tools/cli_docs.py).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

# Resolve calibench[dev] afresh in a throwaway venv and rewrite requirements.lock; then `make clean test` and commit.
lock:
	$(PYTHON) tools/lock.py refresh

# Resolve requirements-cuda.lock from requirements.lock (pip --dry-run --report: registry metadata, no wheels).
lock-cuda:
	$(PYTHON) tools/lock.py cuda

clean:
	rm -rf $(VENV) demo-out demo-study site .pytest_cache
