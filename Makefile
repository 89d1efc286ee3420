# esrt-lit: every target sets itself up (virtualenv, CPU torch 2.13.0 first, then the package).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: help install demo test test-fast lint format bench clean

help:  ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv with CPU torch 2.13.0 and esrt-lit[dev]

demo: $(STAMP)  ## the main job on the embedded default data (see README)
	$(BIN)/python -m esrt_lit.demo

test: $(STAMP)  ## the whole test suite, slow tests included (what CI runs)
	$(BIN)/python -m pytest -n 2 --durations=15

test-fast: $(STAMP)  ## the fast tests only
	$(BIN)/python -m pytest -n 2 -m "not slow"

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(STAMP)  ## ruff format and autofix
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

bench: $(STAMP)  ## performance table (python -m esrt_lit.bench --quick)
	$(BIN)/python -m esrt_lit.bench --quick

clean:  ## remove caches (never outputs/ or checkpoints)
	rm -rf .pytest_cache .ruff_cache build dist
