# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench bench-speed clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start the all-in-one service (API + worker + sweeper) on 127.0.0.1:8000.
run: install
	$(BIN)/trainserve up $(ARGS)

## Run every test: ML core, API, migrations, and the integration tests
## (embedded SQLite broker, and PostgreSQL + Redis on this machine).
test: install
	$(BIN)/ruff check service workers migrations tests bench
	$(BIN)/pytest $(PYTEST_ARGS)

## Benchmarks (not part of the tests): default hyperparameters vs scikit-learn.
bench: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python bench/accuracy.py

## Speed benchmarks (not part of the tests): training vs a raw torch loop, predict vs a
## Flask floor (needs wrk, installed from Debian's packages when missing), PostgreSQL + Redis.
bench-speed: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(BIN)/python bench/train.py
	$(BIN)/python bench/predict.py

lint: install
	$(BIN)/ruff check service workers migrations tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
