# Two commands on a fresh machine:  `make run` (the whole stack)  and  `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint schemas asyncapi openapi bench clean tools lock run-cluster client client-deps

# Bootstrap without touching the system Python (PEP 668: Debian's python3.11 refuses `pip install`
# outside a venv): make the venv with the standard library, put uv inside it, install with that uv.
# A venv made earlier by `uv venv` has no pip: ensurepip gives it one first.
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv

$(STAMP): pyproject.toml
	@PYTHON=$(PYTHON) deploy/system-deps.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || { $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip --default-pip >/dev/null; \
		$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); }
	$(UV) pip install --quiet --python $(PY) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## Python dependencies into .venv (Kafka jars, PostgreSQL and nginx come on first use)

run: install  ## Kafka + the four services + the gateway on SQLite; Ctrl-C stops everything
	TAPER_ENV=development $(PY) -m deploy.localstack.stack

run-cluster: install  ## 3 brokers (RF 3), durable PostgreSQL, 2 replicas per service, nginx, sinks
	TAPER_ENV=development $(PY) -m deploy.localstack.cluster --data var/cluster

test: install tools  ## The whole suite with its own Kafka and PostgreSQL; skipped integration = failure
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

openapi: install tools  ## Refresh contracts/openapi/ (each service's and the merged document; refuses unrecorded breaks)
	$(PY) -m deploy.openapi --write
	@$(MAKE) --no-print-directory client

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache

.PHONY: prove
N ?= 1000
DURATION ?= 1800
ROUNDS ?= 10
SEED ?= 14
prove: install  ## Proving grounds: population N, faults ROUNDS per target over DURATION s, SEED; report in bench/results
	$(PY) -m deploy.proving --n $(N) --duration $(DURATION) --rounds $(ROUNDS) --seed $(SEED)
# helm for the chart tests, built once from the Go module proxy and cached under var/ (a fresh clone
# builds it on first `make test`; a second run is a no-op because the binary is the target).
HELM_VERSION := v4.3.2
TOOLS := $(CURDIR)/var/tools
HELM := $(TOOLS)/bin/helm

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)

$(HELM):
	@test -x "$(GO)" || { echo "helm is built with Go >= 1.24: install it (Debian: apt-get install golang-go, or go.dev/dl into /usr/local/go; macOS: brew install go)"; exit 1; }
	mkdir -p $(TOOLS)/bin
	GOBIN=$(TOOLS)/bin GOMODCACHE=$(TOOLS)/gomod GOCACHE=$(TOOLS)/gocache GOFLAGS=-modcacherw \
		$(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

# oasdiff: the HTTP API's breaking-change check (deploy/openapi_compat.py), built the same way.
OASDIFF_VERSION := v1.39.0
OASDIFF := $(TOOLS)/bin/oasdiff

$(OASDIFF):
	@test -x "$(GO)" || { echo "oasdiff is built with Go: install it (see helm above)"; exit 1; }
	mkdir -p $(TOOLS)/bin
	GOBIN=$(TOOLS)/bin GOMODCACHE=$(TOOLS)/gomod GOCACHE=$(TOOLS)/gocache GOFLAGS=-modcacherw \
		$(GO) install github.com/oasdiff/oasdiff@$(OASDIFF_VERSION)

tools: $(HELM) $(OASDIFF)  ## helm and oasdiff (Go modules, built once into var/tools/bin)

# The container image's lock (deploy/container/Dockerfile installs only this, hash-checked).
LOCK_ARGS := pip compile pyproject.toml --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --quiet --custom-compile-command "make lock"

lock: install  ## Refresh deploy/container/requirements.lock from pyproject.toml
	$(UV) $(LOCK_ARGS) -o deploy/container/requirements.lock

# The generated TypeScript client (clients/typescript, issue 18 part 5). Its npm packages come only
# from its package-lock.json (`npm ci`, integrity-checked), reinstalled when the lock changes; the
# stamp lives inside node_modules so deleting node_modules reinstalls. tests/contract/
# test_typescript_client.py runs `make client-deps` itself, so `make test` needs no extra step.
TS_CLIENT := clients/typescript
TS_STAMP := $(TS_CLIENT)/node_modules/.installed

$(TS_STAMP): $(TS_CLIENT)/package.json $(TS_CLIENT)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "the TypeScript client needs Node.js >= 20 with npm (deploy/system-deps.sh installs it on Debian; macOS: brew install node)"; exit 1; }
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	@touch $(TS_STAMP)

client-deps: $(TS_STAMP)  ## npm packages of the TypeScript client, from its package-lock.json

client: client-deps  ## Regenerate clients/typescript/src/taper.ts from contracts/openapi/taper.json, tsc it, run its tests
	cd $(TS_CLIENT) && node scripts/generate.mjs && node_modules/.bin/tsc --noEmit -p tsconfig.json
	cd $(TS_CLIENT) && rm -rf build && node_modules/.bin/tsc -p tsconfig.test.json && node --test build/test/
