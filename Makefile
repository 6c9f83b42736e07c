# The product's front door: `make up` runs the bot, `make test` runs the tests. The commands
# are `python -m ops <command>` (ops/cli.py); ENV_FILE picks the .env they read.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install up down status demo test test-cluster test-compose lint format docs lock lock-peer peer dead-letters bench bench-quick bench-campaigns bench-cpu bench-ingress profile fuzz k8s axe backup restore

install: $(STAMP)

$(STAMP): requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
		echo "make: $(PYTHON) cannot create a virtualenv: install Python 3.11+ with venv" \
			"(Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	@touch $(STAMP)

up: install
	$(BIN)/python -m ops up

down:
	@test -x $(BIN)/python && $(BIN)/python -m ops down || true

status: install
	$(BIN)/python -m ops status

demo: install
	$(BIN)/python -m ops demo

dead-letters: install
	$(BIN)/python -m ops dead-letters

test: install
	$(BIN)/python -m pytest --ignore=tests/cluster --ignore=tests/compose

# The stack on a three-node RabbitMQ cluster of its own, nodes SIGKILLed mid-run, and on a
# PostgreSQL primary and replica of its own, the primary SIGKILLed and the replica promoted
# (docs/cluster.md): about 3 minutes. CI runs it after `make test`.
test-cluster: install
	$(BIN)/python -m pytest -s tests/cluster

# The services as Docker containers from docker-compose.yml and deploy/Dockerfile, on the host's
# network against this machine's RabbitMQ and PostgreSQL, one SIGKILLed mid-load (docs/docker.md):
# needs a Docker engine, docker-compose and debootstrap (deploy/setup-servers.sh --docker).
# About 3 minutes the first time (base and image built), under a minute with them cached.
test-compose: install
	$(BIN)/python -m pytest -s tests/compose

# The benchmark (tests/bench, README "Performance"): its own stack on an isolated vhost and
# database, about 10 minutes; bench-quick (or ARGS=--quick) under 2. Not part of `make test`.
# A backup (docs/privacy.md): data.dump, keys.dump (keep it apart) and media.tgz in
# backups/<time> (OUT=folder); restore one into a fresh database: make restore FROM=folder
# [KEYS=newest keys.dump]. The restore re-erases and rebuilds the read models.
backup: install
	$(BIN)/python -m ops backup $(if $(OUT),--out $(OUT))

restore: install
	$(BIN)/python -m ops restore $(FROM) $(if $(KEYS),--keys $(KEYS))

bench: install peer
	$(BIN)/python -m tests.bench $(ARGS)

bench-quick: install peer
	$(BIN)/python -m tests.bench --quick $(ARGS)

# The bench's peer, a pywa bot (tests/bench/peer), in a virtualenv of its own: none of its
# packages is a dependency of ours. lock-peer regenerates its lock (needs `uv`).
PEER := .venv-peer
peer: $(PEER)/.installed

$(PEER)/.installed: tests/bench/peer/requirements.lock
	@test -x $(PEER)/bin/python || $(PYTHON) -m venv $(PEER)
	@# Python 3.11's own pip (23.2) refuses the lock: it takes fastapi-cli's uvicorn[standard]
	@# for a requirement of its own, unpinned, in hash-checking mode.
	$(PEER)/bin/python -m pip install --quiet pip==26.3
	$(PEER)/bin/python -m pip install --quiet --require-hashes -r tests/bench/peer/requirements.lock
	@touch $@

lock-peer: install
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile tests/bench/peer/requirements.in --generate-hashes \
		--python-version 3.11 -o tests/bench/peer/requirements.lock

# Campaign send rate at 80/s and 1,000/s, and reply latency during a campaign (docs/campaigns.md).
bench-campaigns: install
	$(BIN)/python -m tests.bench.campaigns $(ARGS)

# The webhook fuzz test at length: FUZZ_EXAMPLES batches of 40 signed deliveries (CI runs
# 60); FUZZ_STRICT=1 also breaks messages' bodies, which the conversation reads.
fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-500} $(BIN)/python -m pytest -q -s --timeout=0 \
		tests/e2e/test_fuzz_ingress.py

# Where each service's CPU goes under steady load (py-spy), e.g. ARGS="--rate 100".
# CPU and database commits per message at one rate (ARGS="--rate 60 --steps 3"): for A/B runs.
bench-cpu: install
	$(BIN)/python -m tests.bench.cpu $(ARGS)

bench-ingress: install
	$(BIN)/python -m tests.bench.ingress $(ARGS)

profile: install
	$(BIN)/python -m tests.bench.profile $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerate the documents made from the code (a test fails when either is stale): the
# configuration reference and the event catalogue.
docs: install
	$(BIN)/python -m shared.configdoc
	$(BIN)/python -m ops.k8s
	$(BIN)/python -m shared.events.catalogue

# The Kubernetes base manifests of the services, from shared/services.py (docs/kubernetes.md).
k8s: install
	$(BIN)/python -m ops.k8s

# Vendor axe-core (pinned in tests/a11y/package-lock.json) for the console's accessibility
# check in the browser tests: the committed copy is what the tests load (no CDN, no npm at
# test time); run this after changing the version.
axe:
	cd tests/a11y && npm ci --no-audit --no-fund
	cp tests/a11y/node_modules/axe-core/axe.min.js tests/a11y/axe.min.js
	cp tests/a11y/node_modules/axe-core/LICENSE tests/a11y/LICENSE.axe-core
	node -e "console.log(require('./tests/a11y/node_modules/axe-core/package.json').version)" \
		> tests/a11y/axe.VERSION

# Regenerate the lock files after changing pyproject.toml (needs `uv`, from PyPI).
lock:
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --generate-hashes \
		--python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes \
		--python-version 3.11 -o requirements-dev.lock
