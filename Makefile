# dfprep: `make install`, `make features DATASET=... ROOT=... STORE=... [PROFILE=...]`, `make train MODEL=... PROFILE=...`, `make test`, `make bench`, `make bench-cluster`, `make bench-scale`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATASET ?= demo
ROOT ?= data/$(DATASET)
PROFILE ?= default
STORE ?= stores/$(DATASET)-$(PROFILE).zarr
MODEL ?= ofcnn
RUN ?= runs/$(DATASET)-$(MODEL)
ARGS ?=
# Dataset options, passed on when set: COMP=c40 METHODS=Deepfakes,FaceSwap SPLITS=DIR FFPP_ROOT=DIR LABELS=FILE.csv SEED=1
SOURCE_ARGS = $(strip $(if $(COMP),--comp $(COMP)) $(if $(METHODS),--methods $(METHODS)) $(if $(SPLITS),--splits $(SPLITS)) \
	$(if $(FFPP_ROOT),--ffpp-root $(FFPP_ROOT)) $(if $(LABELS),--labels $(LABELS)) $(if $(SEED),--seed $(SEED)))

.PHONY: install features status train test bench bench-cluster bench-scale clean

install: $(VENV)/.installed

# constraints.txt pins the versions CI runs; the project itself asks only for ranges.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[train,dev]'
	touch $@

features: install
	$(BIN)/dfprep features --dataset $(DATASET) --root $(ROOT) --store $(STORE) --profile $(PROFILE) $(SOURCE_ARGS) $(ARGS)
	$(BIN)/dfprep status --store $(STORE)

status: install
	$(BIN)/dfprep status --store $(STORE)

# Train on the store (build it with the model's profile: `dfprep models` lists them), then
# score the test split with the epoch chosen on val.
train: install
	$(BIN)/dfprep train --store $(STORE) --model $(MODEL) --out $(RUN) $(ARGS)
	$(BIN)/dfprep evaluate --checkpoint $(RUN)/best.pt --store $(STORE) --split test

test: install
	$(BIN)/pytest -q

# Several minutes: the corpus is made once into bench/out/, then each side runs three times.
bench: install
	$(BIN)/python -m bench

# 1 against 2 worker processes, 3 runs each, and a worker's peak memory on a 4K clip, into
# BENCHMARKS.md; the clips are made once into bench/out/cluster/. Run it on a quiet machine.
bench-cluster: install
	$(BIN)/python -m bench.cluster $(ARGS)

# The store's costs as videos are added: 1,000 and 5,000 tiny videos on disk, 200 and 1,000 on moto's
# S3 server, into BENCHMARKS.md (about an hour on 2 cores). ARGS="--sizes 50 --s3-sizes 20 --reps 1" to try it.
bench-scale: install
	$(BIN)/python -m bench.scale $(ARGS)

clean:
	rm -rf data/demo stores
