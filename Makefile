# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stamp makes `make setup` fast when nothing changed: it is newer than pyproject.toml once installed.
STAMP := $(VENV)/.installed

.PHONY: setup run test bench lint format clean

setup: $(STAMP)
	@:  # a recipe, so that make has nothing to say when nothing changed

$(STAMP): pyproject.toml
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/setup
	@touch $(STAMP)

run: setup
	$(BIN)/citebot ingest corpus/
	$(BIN)/citebot run

test: setup
	$(BIN)/python -m pytest -q -rs

bench: setup
	$(BIN)/python -m bench

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .citebot .pytest_cache .mypy_cache .ruff_cache
