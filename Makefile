# hpcxlt — the two commands that matter: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hpcxlt-installed
ARTIFACTS ?= artifacts
RUN_DIR ?= runs/demo
SLURM_DIR ?= /tmp/hpcxlt-slurm
# compute nodes n1..nN in network namespaces beside the host's node (slurm/up.sh --nodes)
NODES ?= 2
PYTEST_ARGS ?=
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export DS_ACCELERATOR ?= cpu

.PHONY: help setup demo demo-data plan test test-fast lint browser slurm-up slurm-down bench bench-gpu clean

help:
	@echo "make demo       set up, build the tiny model + synthetic XTREME-R, run the demo grid, print the tables"
	@echo "make test       set up (venv, local Slurm cluster) and run the whole test suite"
	@echo "make test-fast  unit tests only (no Slurm/MPI/DeepSpeed integration)"
	@echo "make lint       ruff (lint + format check) and mypy"
	@echo "make slurm-up / slurm-down   start / stop the local Slurm cluster (host node + NODES=2 namespaced nodes)"
	@echo "make bench      run the CPU benchmark scripts under bench/ (make bench-gpu on a GPU node)"

# Idempotent: reinstalls only when requirements.txt or pyproject.toml changed.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

demo-data: setup
	$(BIN)/hpcxlt build-tiny $(ARTIFACTS)/tiny
	$(BIN)/hpcxlt synth --force $(ARTIFACTS)/synth  # generated data: rewritten when the generator or its tasks changed

plan: setup
	$(BIN)/hpcxlt plan configs/demo.yaml

# The whole demo grid on the embedded default: local executor, tiny model, synthetic data; then the
# MPI gather (2 ranks) prints the tables (--partial: the demo has 4 of the 10 XTREME-R tasks).
# Rerunning finds every cell done and only re-aggregates.
demo: demo-data
	$(BIN)/hpcxlt plan configs/demo.yaml
	$(BIN)/hpcxlt submit configs/demo.yaml --run-dir $(RUN_DIR) --local
	$(BIN)/mpiexec -n 2 $(BIN)/hpcxlt aggregate $(RUN_DIR) --partial

test: setup slurm-up browser lint
	source $(SLURM_DIR)/env.sh && PYTHON=$(BIN)/python bash scripts/run-tests.sh $(PYTEST_ARGS)

# the report's test renders it in a real headless browser (Debian's chromium; root, apt)
browser:
	@command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# the code's habits (pyproject.toml): ruff lint and format, mypy on hpcxlt/
lint: setup
	$(BIN)/ruff check hpcxlt tests bench scripts
	$(BIN)/ruff format --check hpcxlt tests bench scripts
	$(BIN)/mypy

test-fast: setup
	$(BIN)/python -m pytest -m "not slurm and not mpi and not deepspeed and not slow" $(PYTEST_ARGS)

slurm-up:
	bash slurm/install.sh
	bash slurm/up.sh --nodes $(NODES) $(SLURM_DIR)

slurm-down:
	bash slurm/down.sh $(SLURM_DIR)

# CPU benchmarks (bench/gpu_xlmr_large.py refuses to run without a GPU: `make bench-gpu` on a GPU node).
bench: setup
	@for script in $(filter-out bench/gpu_xlmr_large.py,$(wildcard bench/*.py)); do \
		echo "== $$script"; $(BIN)/python $$script || exit 1; done

bench-gpu: setup
	$(BIN)/python bench/gpu_xlmr_large.py

clean:
	rm -rf $(ARTIFACTS) runs .pytest_cache
