# Two commands on a fresh machine:  `make run` (the whole stack)  and  `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint schemas asyncapi bench clean run-cluster

$(STAMP): pyproject.toml
	@deploy/system-deps.sh
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@test -x $(PY) || uv venv --quiet --python $(PYTHON) $(VENV)
	uv pip install --quiet --python $(PY) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## Python dependencies into .venv (Kafka jars, PostgreSQL and nginx come on first use)

run: install  ## Kafka + the four services + the gateway on SQLite; Ctrl-C stops everything
	TAPER_ENV=development $(PY) -m deploy.localstack.stack

run-cluster: install  ## 3 brokers (RF 3), durable PostgreSQL, 2 replicas per service, nginx, sinks
	TAPER_ENV=development $(PY) -m deploy.localstack.cluster --data var/cluster

test: install  ## The whole suite with its own Kafka and PostgreSQL; skipped integration = failure
	TAPER_REQUIRE_INTEGRATION=1 $(PY) -m pytest $(PYTEST_ARGS)

test-fast: install  ## Unit and contract tests only (no broker, no database)
	$(PY) -m pytest tests/unit tests/contract $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy contracts services deploy

schemas: install  ## Refresh the committed JSON Schema snapshots (refuses breaking changes)
	$(PY) -m contracts.snapshot --write

asyncapi: install  ## Regenerate the AsyncAPI documents under contracts/asyncapi/
	$(PY) -m deploy.asyncapi --write

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
