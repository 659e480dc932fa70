# PoseBench: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv/ and install PoseBench (editable, with test extra) at the pinned versions

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

test: $(STAMP) ## Run the test suite (everything not marked gpu)
	$(PY) -m pytest -m "not gpu" -q

synth: $(STAMP) ## Generate the SynthPose data set into data/synthpose
	$(PY) -m benchmark data synth --out data/synthpose --train 2000 --val 500 --seed 0

clean: ## Remove the virtual environment and generated outputs (keeps data/)
	rm -rf $(VENV) outputs lightning_logs wandb .pytest_cache

.PHONY: help install test synth clean
