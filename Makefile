# One entry point. `make demo` runs the main job on the built-in world; `make test` runs the tests.
# Both create the virtual environment and install the project on first use (and again whenever
# pyproject.toml or constraints.txt changes), with the exact versions of constraints.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORK := $(CURDIR)/.work
export DAGSTER_HOME ?= $(WORK)/dagster_home
export HF_HUB_OFFLINE ?= 1
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000
WORKERS ?= 2
CLUSTER_DIR ?= $(WORK)/cluster

.PHONY: install demo test ui validate clean-work cluster cluster-stop

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,cluster]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml  ## main job: build the built-in world (cached) and materialize every asset
	$(BIN)/python -m pipelines.cli demo

test: $(STAMP)  ## the test suite (offline, CPU)
	$(BIN)/python -m pytest -q

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME) && cp deploy/dagster.yaml $@

ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml  ## Dagster UI + daemon (sensors, schedule on) on http://127.0.0.1:3000
	$(BIN)/python -m pipelines.ui -w workspace.yaml -h $(UI_HOST) -p $(UI_PORT)

validate: $(STAMP) $(DAGSTER_HOME)/dagster.yaml  ## check the Dagster definitions load
	$(BIN)/dagster definitions validate -w workspace.yaml

cluster: $(STAMP)  ## webserver + daemon on PostgreSQL, $(WORKERS) Celery workers, artifacts on S3 (all on 127.0.0.1)
	$(BIN)/python -m pipelines.cluster start --run-dir $(CLUSTER_DIR) --workers $(WORKERS) --port $(UI_PORT)

cluster-stop:  ## stop every process `make cluster` started, by its PID
	$(BIN)/python -m pipelines.cluster stop --run-dir $(CLUSTER_DIR)

clean-work:  ## delete the working folder (artifacts, instance, generated world)
	rm -rf $(WORK)
