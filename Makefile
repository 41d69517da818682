# Two commands on a fresh machine: `make run` and `make test`. Both set up first;
# the setup is skipped while its stamp is newer than pyproject.toml and requirements.lock.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast bench lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "setting up $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/python -m pip install --disable-pip-version-check -c requirements.lock -e ".[dev]" \
		> $(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

run: setup
	$(BIN)/kdflow run

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not e2e"

bench: setup
	$(BIN)/python bench/lifecycle.py

# Refresh requirements.lock from the current environment after changing a pin.
lock: setup
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/+cpu$$//' > requirements.lock

clean:
	rm -rf $(VENV) mlflow.db mlartifacts .prefect
