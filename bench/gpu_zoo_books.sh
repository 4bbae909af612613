#!/usr/bin/env bash
# The zoo's GPU rows on the book corpus, as one prepared run for a GPU lent for minutes: bert-mini (masked LM)
# then GPT-2 (causal LM), bf16, on the train shards of DATA_DIR/gutenberg, each evaluated on the held-out
# validation and test books. As soon as each run ends, its folder is packed into PACK_DIR as tar parts under
# 16 MiB (bert-mini whole, with its weights for the GLUE grid; GPT-2 without its 500 MB of weights), beside its
# log; join them with `cat NAME.tar.part* | tar -x`.
#
#   bash bench/gpu_zoo_books.sh            # on one CUDA GPU, from the repository root (under 10 minutes)
#   QUICK=1 bash bench/gpu_zoo_books.sh    # the dry run of the script itself (one-layer models, a few steps; CPU)
#
# DATA_DIR (default ../shared/data) holds gutenberg/ and tokenizers/{bert-base-uncased,gpt2}; SHARDS picks the
# train shards (default: the first five). For a machine with no network, a DATA_DIR holding just those shards,
# gutenberg/{validation,test}.txt.xz and the two tokenizer folders is about 55 MB; link it as ../shared/data so
# that the records' rerun commands read as anyone's. WHEELS=DIR installs the wheels in DIR first (datasets, dill
# and multiprocess, for a machine that lacks datasets). Steps and time limits are sized from the throughput
# bench/gpu_check.sh measured on an H200 (bert-mini 418k tokens/s at batch 128 x 128, GPT-2 124k at 16 x 1024):
# each run's --max_train_minutes stops it in time to evaluate and save; the outer timeout is the last resort.
# Exit status: 0 when both runs completed, 1 otherwise (whatever finished is packed either way), 2 bad input.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-../shared/data}
SHARDS=${SHARDS:-train-0[0-4].txt.xz}
OUT_ROOT=${OUT_ROOT:-${TMPDIR:-/tmp}/lmzoo-gpu-books}
# The run folders, as the zoo's rerun commands name them; a dry run keeps out of the real ones.
RUNS_DIR=${RUNS_DIR:-$([ -n "${QUICK:-}" ] && echo "$OUT_ROOT/runs" || echo outputs)}
PACK_DIR=${PACK_DIR:-$OUT_ROOT/pack}
PART_SIZE=${PART_SIZE:-15m}
PY=${PYTHON:-python3}
NAME=gpu_zoo_books
# shellcheck source=bench/gpu_books_inputs.sh
source bench/gpu_books_inputs.sh
# shellcheck source=bench/gpu_env.sh
source bench/gpu_env.sh
set -f  # from here on SHARDS stays a pattern: the scripts expand it themselves
mkdir -p "$RUNS_DIR" "$PACK_DIR"
PACK_DIR=$(cd "$PACK_DIR" && pwd)
find "$PACK_DIR" -mindepth 1 -delete  # emptied, not removed: it may be a folder the caller owns
rm -rf "$RUNS_DIR/bert-mini-books" "$RUNS_DIR/gpt2-books"

if [ -n "${QUICK:-}" ]; then
    BERT="--config_name bert-mini --config_overrides num_hidden_layers=1,hidden_size=64,num_attention_heads=1,intermediate_size=128
          --max_steps ${BERT_STEPS:-20} --per_device_train_batch_size 16 --max_eval_samples 64"
    GPT2="--config_name gpt2 --config_overrides n_layer=1,n_embd=64,n_head=2
          --max_steps ${GPT2_STEPS:-10} --per_device_train_batch_size 4 --block_size 256 --max_eval_samples 16"
else
    # bert-mini: 3,000 steps x 256 x 128 = 98.3M tokens, 3.9 min at the 418k tokens/s measured at batch 128 (a
    # larger batch is unlikely to be slower), stopped at 4.25 min if it is. GPT-2: 800 steps x 16 x 1024 = 13.1M
    # tokens, 1.8 min at the measured 124k tokens/s, stopped at 2 min. Tokenizing, compiling and evaluating add
    # about a minute and a half to each; the two outer timeouts and the set-up stay under ten minutes.
    BERT="--config_name bert-mini --max_steps ${BERT_STEPS:-3000} --max_train_minutes ${BERT_MINUTES:-4.25}
          --per_device_train_batch_size 256 --per_device_eval_batch_size 512 --learning_rate 1e-3 --warmup_steps 0.05"
    GPT2="--config_name gpt2 --max_steps ${GPT2_STEPS:-800} --max_train_minutes ${GPT2_MINUTES:-2}
          --per_device_train_batch_size 16 --block_size 1024 --per_device_eval_batch_size 32 --learning_rate 6e-4
          --warmup_steps 0.05"
fi
COMMON="--train_file $BOOKS/$SHARDS --validation_file $BOOKS/validation.txt.xz --test_file $BOOKS/test.txt.xz
        --do_train --do_eval --weight_decay 0.01 --logging_steps 50 --save_strategy no --seed 42
        --report_to none --disable_tqdm True"

failed=0
run() {  # name, seconds allowed, what to leave out of the pack, script and its arguments
    local name=$1 limit=$2 leave_out=$3; shift 3
    echo "== $name (at most $limit s)"
    local start=$SECONDS status=0
    timeout --kill-after 10 "$limit" "$@" --output_dir "$RUNS_DIR/$name" > "$RUNS_DIR/$name.log" 2>&1 || status=$?
    echo "   exit $status after $((SECONDS - start)) s"
    if [ "$status" != 0 ]; then failed=1; tail -n 15 "$RUNS_DIR/$name.log"; fi
    cp "$RUNS_DIR/$name.log" "$PACK_DIR/"
    if [ -d "$RUNS_DIR/$name" ]; then
        tar -C "$RUNS_DIR" -cf - --exclude="$leave_out" "$name" | split -b "$PART_SIZE" -d - "$PACK_DIR/$name.tar.part" \
            || { echo "   packing $name failed" >&2; failed=1; }
    fi
}
# shellcheck disable=SC2086  # the settings are word lists on purpose
run bert-mini-books "${BERT_TIMEOUT:-350}" "checkpoint-*" $PY run_mlm.py $BERT \
    --tokenizer_name "$DATA_DIR/tokenizers/bert-base-uncased" --max_seq_length 128 $COMMON
# shellcheck disable=SC2086
run gpt2-books "${GPT2_TIMEOUT:-210}" "*.safetensors" $PY run_clm.py $GPT2 \
    --tokenizer_name "$DATA_DIR/tokenizers/gpt2" $COMMON

$PY - "$RUNS_DIR" <<'PY' || true
import json, os, sys
root = sys.argv[1]
print(f"\n{'run':16s} {'precision':9s} {'params':>8s} {'steps':>6s} {'tokens seen':>12s} {'tokens/s':>10s} "
      f"{'MFU':>6s} {'val ppl':>9s} {'test ppl':>9s} {'wall s':>7s}")
for name in ("bert-mini-books", "gpt2-books"):
    path = os.path.join(root, name, "lmzoo_record.json")
    if not os.path.isfile(path):
        print(f"{name:16s} no record (see {name}.log)")
        continue
    r = json.load(open(path))
    t = r.get("throughput") or {}
    mfu = f"{t['mfu']:.1%}" if t.get("mfu") else "-"
    number = lambda key: f"{r[key]:.2f}" if r.get(key) is not None else "-"
    print(f"{name:16s} {r.get('precision', '-'):9s} {r['parameters'] / 1e6:7.1f}M {r.get('steps', 0):6d} "
          f"{r.get('tokens_seen', 0):12,} {t.get('tokens_per_second', 0):10,.0f} {mfu:>6s} "
          f"{number('perplexity'):>9s} {number('test_perplexity'):>9s} {r.get('wall_time_s', 0):7.0f}")
    if (r.get("time_limit") or {}).get("stopped_at_step") is not None:
        print(f"{'':16s} stopped by its time limit at step {r['time_limit']['stopped_at_step']}")
PY
ls -l "$PACK_DIR"
exit "$failed"
