# One command per task, the same for developers and CI. Each creates .venv when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN = $(VENV)/bin
CONFIG ?= $(if $(wildcard feedbot.yaml),feedbot.yaml,)

.PHONY: install run serve test check format bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,demo]'
	touch $@

install: $(BIN)/.installed

## run: the demo: feedbot watches the instrumented vault app's deploy and shows the DM it sends
run: install
	$(BIN)/feedbot demo $(DEMO_ARGS)

## serve: feedbot on embedded defaults (SQLite, embedded trace store, console output without Slack)
serve: install
	$(BIN)/feedbot serve $(if $(CONFIG),--config $(CONFIG),)

## test: the whole suite (starts nothing itself; PostgreSQL must answer on 127.0.0.1:5432)
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## check: formatting, lint, types and the layers (import-linter, contracts in pyproject.toml)
check: install
	$(BIN)/ruff format --check feedbot tests benchmarks examples
	$(BIN)/ruff check feedbot tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format feedbot tests benchmarks examples
	$(BIN)/ruff check --fix feedbot tests benchmarks examples

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
