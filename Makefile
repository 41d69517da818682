# Two commands on a fresh machine: `make run` and `make test`. Both set up first;
# the setup is skipped while its stamp is newer than pyproject.toml and requirements.lock.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast lint format services services-down bench lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock kdflow/data/offline_docs.json
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "setting up $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/python -m pip install --disable-pip-version-check -c requirements.lock -e ".[dev]" \
		> $(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log; exit 1; }
	@$(BIN)/python -m kdflow.data.offline_docs fetch  # Data Docs' scripts and styles, so that they work offline
	@touch $(STAMP)

run: setup
	$(BIN)/kdflow run

# Two workers (CI's two cores), each taking a whole test module at a time (module fixtures
# build a project once); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: setup
	$(BIN)/python -m pytest -m "not e2e"

# Lint (ruff), formatting (ruff format) and types (mypy), as CI runs them before the tests.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Apply ruff's safe fixes and its formatting.
format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# A team's stack on loopback (PostgreSQL-backed MLflow server with proxied artifacts, Prefect
# server), for trying kdflow as a team runs it; `make run` needs none of it. Needs Debian's postgresql.
services: setup
	$(BIN)/python -m kdflow.services up

services-down: setup
	$(BIN)/python -m kdflow.services down

bench: setup
	$(BIN)/python bench/lifecycle.py

# Refresh requirements.lock from the current environment after changing a pin.
lock: setup
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/+cpu$$//' > requirements.lock

clean:
	-$(BIN)/python -m kdflow.services down 2>/dev/null
	rm -rf $(VENV) mlflow.db mlartifacts .prefect .services
