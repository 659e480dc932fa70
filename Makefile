# PoseBench: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-26s\033[0m %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv/ and install PoseBench (editable, with test extra) at the pinned versions

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

demo: $(STAMP) ## The main job on any laptop: every method's tiny preset trained on SynthPose (CPU), results/demo/LEADERBOARD.md
	$(PY) -m benchmark demo $(if $(JOBS),--jobs $(JOBS))

test: lint $(STAMP) ## Lint and type-check, then run the test suite (everything not marked gpu) in 2 processes
	$(PY) -m pytest -m "not gpu" -q -n 2

lint: $(STAMP) ## ruff (pyflakes, pycodestyle, import order, pyupgrade, bugbear) and mypy in basic mode
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

synth: $(STAMP) ## Generate the SynthPose data set into data/synthpose
	$(PY) -m benchmark data synth --out data/synthpose --train 2000 --val 500 --seed 0

# reproduce-*: DATA_ROOT=<dataset root> trains the recipe on the real data set and prints a verdict
# (exit 1 outside the recipe's tolerance); DATA=synth trains the method's demo preset instead
# (recipe/demo_<method>.yaml, the one source of the CPU-sized settings, shared with make demo) on SynthPose in
# the recipe's format (no verdict); ARGS="key=value ..." adds config overrides (e.g. trainer.devices=4).
DATA ?= real
DATA_ROOT ?=
ARGS ?=
# $(call reproduce,RECIPE,DEFAULT_DATA_ROOT,METHOD,SYNTHPOSE_FORMAT)
reproduce = @if [ "$(DATA)" = "synth" ]; then \
	  echo "SynthPose run of $(3)'s demo preset (recipe/demo_$(3).yaml): no published reference, no verdict"; \
	  $(PY) -m benchmark train recipe=demo_$(3) data=synthpose data.format=$(4) $(ARGS); \
	else \
	  $(PY) -m benchmark train recipe=$(1) data.root=$(or $(DATA_ROOT),$(2)) $(ARGS); \
	fi

reproduce-hourglass: $(STAMP) ## Hourglass-8 (bearpaw run), MPII val PCKh@0.5 88.78 +- 1.0, no flip test (DATA_ROOT=..., or DATA=synth)
	$(call reproduce,hourglass8_mpii_256,data/mpii,hourglass,mpii)

reproduce-simplebaseline: $(STAMP) ## SimpleBaseline-R50, COCO val AP 70.4 +- 0.7 (DATA_ROOT=..., or DATA=synth)
	$(call reproduce,simplebaseline_res50_coco_256x192,data/coco,simplebaseline,coco)

reproduce-hrnet: $(STAMP) ## HRNet-W32, COCO val AP 74.4 +- 0.7 (DATA_ROOT=..., or DATA=synth)
	$(call reproduce,hrnet_w32_coco_256x192,data/coco,hrnet,coco)

reproduce-cpm: $(STAMP) ## CPM (Caffe recipe), MPII PCKh@0.5 88.5 on the test server: no verdict (DATA_ROOT=..., or DATA=synth)
	$(call reproduce,cpm_mpii_368,data/mpii,cpm,mpii)

reproduce-deeppose: $(STAMP) ## DeepPose ResNet-50 regression (modernized), MPII val 82.6 (DATA_ROOT=..., or DATA=synth)
	$(call reproduce,deeppose_mpii,data/mpii,deeppose,mpii)

reproduce-tompson: $(STAMP) ## Tompson et al., MPII PCKh@0.5 82.0 (test-set reference) (DATA_ROOT=..., or DATA=synth)
	$(call reproduce,tompson_mpii,data/mpii,tompson,mpii)

reproduce-ief: $(STAMP) ## Iterative Error Feedback, MPII val PCKh@0.5 81.8 (DATA_ROOT=..., or DATA=synth)
	$(call reproduce,ief_mpii,data/mpii,ief,mpii)

reproduce-grmi: $(STAMP) ## G-RMI ResNet-101 353x257, COCO test-dev AP 64.9: no verdict on val (DATA_ROOT=..., or DATA=synth)
	$(call reproduce,grmi_coco,data/coco,grmi,coco)

VISREG ?= alexnet
reproduce-visreg: $(STAMP) ## Visibility-head regressor VISREG=baseline1|baseline2|alexnet|vgg19 on LSP-extended: study reference, no verdict (DATA_ROOT=..., or DATA=synth)
	$(call reproduce,visreg_$(VISREG)_lspet,data/lspet,visreg,mpii)

# verify-checkpoints: DATA_ROOT holds coco/ and/or mpii/ (default data); WEIGHTS is the folder with the downloaded
# published checkpoints (docs/checkpoints.md lists them and where to get them); ARGS adds evaluate overrides.
WEIGHTS ?=
verify-checkpoints: $(STAMP) ## Score the published checkpoints in WEIGHTS=<folder> on DATA_ROOT: reproduced within 0.1 AP / 0.1 PCKh?
	$(PY) -m benchmark verify-checkpoints --data-root "$(or $(DATA_ROOT),data)" --weights "$(WEIGHTS)" $(ARGS)

leaderboard: $(STAMP) ## Regenerate results/LEADERBOARD.md, leaderboard.csv and the plot from results/runs/
	$(PY) -m benchmark leaderboard

fidelity: $(STAMP) ## Regenerate docs/fidelity.md from the recipes' fidelity blocks (exit 1 on a missing or stale row)
	$(PY) -m benchmark fidelity --write

gpu-check: $(STAMP) ## On a GPU machine: speed, MFU, loader, gpu tests and a DDP run in < 8 min, results/gpu-check.md
	$(PY) -m benchmark gpu-check

sweep: $(STAMP) ## Run the architecture sweep locally (GPUS=0,1,... runs one run per GPU; resumes)
	$(PY) -m benchmark sweep benchmark/configs/sweeps/architectures.yaml $(if $(GPUS),--gpus $(GPUS))

clean: ## Remove the virtual environment and generated outputs (keeps data/ and results/runs/)
	rm -rf $(VENV) outputs results/demo lightning_logs wandb .pytest_cache

.PHONY: help install demo test lint synth reproduce-hourglass reproduce-simplebaseline reproduce-hrnet reproduce-cpm \
	reproduce-deeppose reproduce-tompson reproduce-ief reproduce-visreg reproduce-grmi verify-checkpoints leaderboard fidelity gpu-check sweep clean
