# Two commands do all the set-up on a fresh clone, offline but for the package index:
#   make demo   virtualenv (unless one is active) + install + pretrain a small BERT on the embedded demo corpus
#   make test   the same set-up, then the test suite
# The CPU build of torch is installed first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
# On a GPU machine, install the torch you want first (or activate an environment that has it): it is kept.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
TORCH_CPU ?= torch==2.13.0
# The shared real-data folder (GLUE TSVs, WikiText-2, tokenizer files) for the data-backed tests, when present.
LMZOO_DATA_DIR ?= $(abspath ../shared/data)
DEMO_OUTPUT ?= outputs/demo-bert-tiny

ifdef VIRTUAL_ENV
  PY := python
else
  PY := $(VENV)/bin/python
endif

.PHONY: install demo test bench clean

install: .lmzoo-installed

.lmzoo-installed: setup.py
	@if [ -z "$$VIRTUAL_ENV" ] && [ ! -x $(VENV)/bin/python ]; then $(PYTHON) -m venv $(VENV); fi
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_CPU)"
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $@

demo: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) run_mlm.py \
	    --config_name bert-tiny --dataset_name demo --vocab_size 8192 \
	    --output_dir $(DEMO_OUTPUT) --overwrite_output_dir \
	    --do_train --do_eval --max_steps 600 --per_device_train_batch_size 32 --max_seq_length 128 \
	    --learning_rate 1e-3 --warmup_steps 0.05 --weight_decay 0.01 \
	    --eval_strategy steps --eval_steps 200 --logging_steps 25 --save_steps 200

test: install
	LMZOO_DATA_DIR="$(LMZOO_DATA_DIR)" $(PY) -m pytest tests -q -p no:cacheprovider

bench: install
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .lmzoo-installed outputs build *.egg-info
