# Everything runs from the repo's own virtualenv, created on first use from requirements.lock.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PSYCOPG_WAIT_FUNC := wait_select

.PHONY: run test test-unit test-integration test-e2e lint up down bench bench-quick chaos chaos-quick backup restore migrate key install clean

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PY) >/dev/null || { echo "needs $(PY)"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	@touch $(STAMP)

install: $(STAMP)

## make run: bootstrap the database, then all four services and the HTTP API (http://127.0.0.1:8000) in the foreground.
run: $(STAMP)
	$(BIN)/python -m services.common.runner

## make test: the whole suite (unit, integration, end-to-end) against the local Postgres and RabbitMQ.
# The hostile corpus runs in a pytest process of its own: after ~350 other tests in the same process its
# in-process gateway stopped answering within 30 s (unexplained; it passes alone and after the chaos run).
test: $(STAMP)
	$(BIN)/python -m pytest tests -q --ignore=tests/integration/test_hostile_corpus.py
	$(BIN)/python -m pytest tests/integration/test_hostile_corpus.py -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

test-integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration -q

test-e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e -q

lint: $(STAMP)
	$(BIN)/ruff check services tests deploy bench
	$(BIN)/mypy services

migrate: $(STAMP)
	$(BIN)/python -m services.common.bootstrap

## make key CLIENT=desk SCOPES=submit,read,staff: print a new API key once.
key: $(STAMP)
	$(BIN)/python -m services.gateway.keys create --client $(CLIENT) --scopes $(SCOPES)

up:
	docker compose -f deploy/docker-compose.yml --env-file deploy/.env up -d --build

down:
	docker compose -f deploy/docker-compose.yml --env-file deploy/.env down

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick

## make chaos: faults injected while 10,000 requests arrive (restarts the local Postgres and RabbitMQ); see docs/resilience.md.
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.run

chaos-quick: $(STAMP)
	$(BIN)/python -m tests.chaos.run --quick

## make backup [BACKUP_FILE=...]: a consistent dump of the platform database while traffic flows.
backup: $(STAMP)
	mkdir -p tmp/backups
	$(BIN)/python -m services.common.backup dump --database $${PROPSVC_DB:-propsvc} --out $${BACKUP_FILE:-tmp/backups/propsvc-$$(date -u +%Y%m%dT%H%M%SZ).dump}

## make restore BACKUP_FILE=... RESTORE_DB=...: restore into a fresh database and verify it.
restore: $(STAMP)
	$(BIN)/python -m services.common.backup restore --file $(BACKUP_FILE) --database $(RESTORE_DB)

clean:
	rm -rf $(VENV)
