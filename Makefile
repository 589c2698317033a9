# Juhe: `make run` starts the whole platform; `make test` runs the whole suite. Both install first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
INSTALLED := $(VENV)/.installed
export XDG_RUNTIME_DIR ?= /tmp/juhe-runtime

.PHONY: help install browser run reset test check lint typecheck imports fmt format docs docs-serve hooks unit integration e2e revision lock bench-ledger bench-routing bench-gateway bench-reconciliation bench-e2e bench-startup clean

# `make` alone lists the targets with their `## ` descriptions.
.DEFAULT_GOAL := help
help:
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## (.*)/  \1\t\2/' | expand -t 24

install: $(INSTALLED) ## create .venv and install the pinned dependencies (once; again when the lock changes)

$(INSTALLED): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
# two Alipay SDKs ship alipay/__init__.py; python-alipay-sdk's must win (pyproject.toml dev extras)
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --reinstall-package python-alipay-sdk -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	$(MAKE) --no-print-directory browser
	touch $@

# Page tests drive Debian's Chromium (`playwright install` cannot download its own build here) with CJK
# fonts so Chinese renders; installed only when missing, so a second run costs nothing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium and fonts-noto-cjk (page tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; }

run: install ## start the whole platform on the embedded default, seed the demo, print URLs and keys
	$(BIN)/python -m deploy.launcher run

reset: ## forget the local platform's data (.juhe)
	rm -rf .juhe

# Two workers, a test file each at a time (module-scoped platforms stay on one worker); each worker has its
# own embedded PostgreSQL and broker. TEST_WORKERS=0 runs in this process, one file after another.
TEST_WORKERS ?= 2
test: install check ## lint, types, import layers, then the whole suite (TEST_WORKERS=0: one process)
	$(BIN)/pytest --durations=25 $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

check: lint typecheck imports ## ruff (lint + format check), mypy, import-linter contracts

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@! grep -rnE --include='*.py' --exclude-dir=.venv --exclude-dir=.juhe '#[[:space:]]*fmt:[[:space:]]*(skip|off)' . \
		|| { echo 'ruff format lays out every file: remove the fmt: skip/off above (CONTRIBUTING §5)'; exit 1; }

typecheck: install
	$(BIN)/mypy libs services gateway sandboxes deploy bench web tests

imports: install
	$(BIN)/lint-imports

# Rewrites files: ruff's formatter, then ruff's safe fixes (import order, upgrades). `make lint` only reports.
fmt: install ## rewrite files: ruff format, then ruff's safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

format: fmt

# The docs site (mkdocs.yml): docs/ plus the READMEs next to the code, offline, strict (a broken link fails).
DOCS_SITE := .artifacts/site
# Off the platform's ports (8000-8105, README) so the docs can be read while `make run` is up.
DOCS_PORT ?= 8200
docs: install ## build the docs site strictly into .artifacts/site
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(DOCS_SITE)
	@echo "open $(DOCS_SITE)/index.html (works from disk) or run make docs-serve"

docs-serve: install ## serve the docs site on 127.0.0.1:8200 (DOCS_PORT=)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:$(DOCS_PORT)

# Git hooks from .pre-commit-config.yaml (ruff, mypy, import contracts, whitespace) before each commit.
hooks: install ## install the pre-commit git hooks
	$(BIN)/pre-commit install

unit: install ## unit tests only (no database, no processes): seconds
	$(BIN)/pytest -m "not e2e" libs services/*/tests/unit

integration: install ## every test but those that start whole platforms (services on the embedded infrastructure)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not e2e"

e2e: install ## the tests that start real service processes (launcher, faults, pages in Chromium)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m e2e

# A new Alembic revision of one service, numbered after its head: make revision SVC=cashier MSG="add x"
revision: install ## new migration of a service: SVC=<name> MSG="what it does"
	@test -n "$(SVC)" -a -n "$(MSG)" || { echo 'usage: make revision SVC=<service> MSG="what it does"'; exit 2; }
	$(BIN)/python -m libs.common.migrations revision $(SVC) "$(MSG)"

lock: ## re-resolve requirements.lock from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements.lock --python-version 3.11

bench-ledger: install ## ledger hot accounts vs a row-lock baseline
	$(BIN)/python -m bench.ledger_hot_accounts

bench-routing: install ## routing savings vs a fixed channel
	$(BIN)/python -m bench.routing_savings

bench-gateway: install ## gateway overhead vs calling the service directly
	$(BIN)/python -m bench.gateway_overhead

bench-reconciliation: install ## reconciliation vs a naive matcher
	$(BIN)/python -m bench.reconciliation

bench-e2e: install ## the whole platform under 16 merchants' payments vs the channel sandbox direct
	$(BIN)/python -m bench.e2e_payments

bench-startup: install ## warm make run to ready (CPU-s per process, timeline) and the idle platform's CPU, RSS, PSS
	$(BIN)/python -m bench.startup

clean: ## remove .venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
