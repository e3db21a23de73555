# One entry point. `make demo` runs the main job on the built-in world; `make test` runs the tests.
# Both create the virtual environment and install the project on first use (and again whenever
# pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORK := $(CURDIR)/.work
export DAGSTER_HOME ?= $(WORK)/dagster_home
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test ui validate clean-work

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## main job: build the built-in world (cached) and materialize every asset
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/python -m pipelines.cli demo

test: $(STAMP)  ## the test suite (offline, CPU)
	$(BIN)/python -m pytest -q

ui: $(STAMP)  ## Dagster UI + daemon on http://127.0.0.1:3000, persistent DAGSTER_HOME
	mkdir -p $(DAGSTER_HOME) && touch $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

validate: $(STAMP)  ## check the Dagster definitions load
	mkdir -p $(DAGSTER_HOME) && touch $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster definitions validate -w workspace.yaml

clean-work:  ## delete the working folder (artifacts, instance, generated world)
	rm -rf $(WORK)
