# The product's front door: `make up` runs the bot, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install up down status demo test lint format lock dead-letters bench bench-quick profile

install: $(STAMP)

$(STAMP): requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	@touch $(STAMP)

up: install
	$(BIN)/python -m shared.cli up

down:
	@test -x $(BIN)/python && $(BIN)/python -m shared.cli down || true

status: install
	$(BIN)/python -m shared.cli status

demo: install
	$(BIN)/python -m shared.cli demo

dead-letters: install
	$(BIN)/python -m shared.cli dead-letters

test: install
	$(BIN)/python -m pytest

# The benchmark (tests/bench, README "Performance"): its own stack on an isolated vhost and
# database, about 10 minutes; bench-quick (or ARGS=--quick) under 2. Not part of `make test`.
bench: install
	$(BIN)/python -m tests.bench $(ARGS)

bench-quick: install
	$(BIN)/python -m tests.bench --quick $(ARGS)

# Where each service's CPU goes under steady load (py-spy), e.g. ARGS="--rate 100".
profile: install
	$(BIN)/python -m tests.bench.profile $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerate the lock files after changing pyproject.toml (needs `uv`, from PyPI).
lock:
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --generate-hashes \
		--python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes \
		--python-version 3.11 -o requirements-dev.lock
