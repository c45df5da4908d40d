# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stamp makes `make setup` fast when nothing changed: it is newer than pyproject.toml once installed.
STAMP := $(VENV)/.installed

.PHONY: setup run test bench lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if test -x $(BIN)/python; then \
		echo "Updating citebot in $(VENV) (pyproject.toml changed)…"; \
	else \
		echo "Installing citebot into $(VENV) (first time only, about two minutes)…"; \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/citebot ingest corpus/
	$(BIN)/citebot run

test: setup
	$(BIN)/python -m pytest -q

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
