# csvr: every target depends on the venv, so any target works as the first command on a fresh clone.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export OMP_NUM_THREADS ?= 2

DATASET ?= synthetic
ROOT ?= data/$(DATASET)
OUT ?= stores/$(DATASET).zarr
WORKERS ?= 2
SCHEDULER ?=
CONFIG ?= tiny
RUN ?= runs/$(DATASET)-$(CONFIG)

.PHONY: setup test demo download manifest synth preprocess pretrain finetune evaluate ablate bench clean

setup: $(BIN)/.installed
$(BIN)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip -q
	$(BIN)/pip install -q -e ".[test]"
	touch $@

test: setup
	$(BIN)/python -m pytest -q

synth: setup
	@test -d data/synthetic || $(BIN)/csvr synth data/synthetic --videos-per-class 10 --seed 0

manifest: setup
	$(BIN)/csvr manifest $(DATASET) --root $(ROOT)

download: setup
	$(BIN)/csvr download $(DATASET) --dest data

clean:
	rm -rf $(VENV) stores runs bench
