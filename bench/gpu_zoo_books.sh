#!/usr/bin/env bash
# The zoo's GPU rows on the book corpus, as one prepared run for a GPU lent for minutes: bert-mini (masked LM)
# then GPT-2 (causal LM), bf16, on the train shards of DATA_DIR/gutenberg, each evaluated on the held-out
# validation and test books. Afterwards the bert-mini run folder (checkpoint, tokenizer, record, log) and the
# GPT-2 run's record and log are packed as tar parts under 16 MiB each into PACK_DIR, to be carried back and
# joined with `cat NAME.tar.part* | tar -x`; the GLUE grid of bert-mini then runs wherever there is time.
#
#   bash bench/gpu_zoo_books.sh                      # on one CUDA GPU, from the repository root (under 10 minutes)
#   QUICK=1 bash bench/gpu_zoo_books.sh              # the dry run of the script itself (tiny models; CPU is fine)
#
# DATA_DIR (default ../shared/data) holds gutenberg/ and tokenizers/{bert-base-uncased,gpt2}; SHARDS picks the
# train shards (default: the first five). For a machine with no network, a DATA_DIR holding just those shards,
# gutenberg/{validation,test}.txt.xz and the two tokenizer folders is about 55 MB. WHEELS=DIR installs the wheels in
# DIR first into a private folder (for a machine that lacks e.g. datasets). BERT_STEPS, GPT2_STEPS and the
# *_TIMEOUT guards are sized from the throughput bench/gpu_check.sh measured on an H200 (bert-mini 418k tokens/s
# at batch 128 x 128, GPT-2 124k at 16 x 1024): each run stops at its guard rather than overrun the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-../shared/data}
SHARDS=${SHARDS:-train-0[0-4].txt.xz}
OUT_ROOT=${OUT_ROOT:-${TMPDIR:-/tmp}/lmzoo-gpu-books}
RUNS_DIR=${RUNS_DIR:-outputs}  # the run folders, as the zoo's rerun commands name them
PACK_DIR=${PACK_DIR:-$OUT_ROOT/pack}
PY=${PYTHON:-python3}
BOOKS=$DATA_DIR/gutenberg
for f in "$BOOKS/validation.txt.xz" "$BOOKS/test.txt.xz" "$DATA_DIR/tokenizers/bert-base-uncased/vocab.txt" \
         "$DATA_DIR/tokenizers/gpt2/vocab.json"; do
    [ -f "$f" ] || { echo "gpu_zoo_books: $f is missing (DATA_DIR=$DATA_DIR)" >&2; exit 2; }
done
compgen -G "$BOOKS/$SHARDS" >/dev/null || { echo "gpu_zoo_books: no train shard matches $BOOKS/$SHARDS" >&2; exit 2; }
# shellcheck source=bench/gpu_env.sh
source bench/gpu_env.sh
set -f  # from here on SHARDS stays a pattern: the scripts expand it themselves
rm -rf "$RUNS_DIR/bert-mini-books" "$RUNS_DIR/gpt2-books" "$PACK_DIR"
mkdir -p "$RUNS_DIR" "$PACK_DIR"
PACK_DIR=$(cd "$PACK_DIR" && pwd)

if [ -n "${QUICK:-}" ]; then  # tiny models, a few steps, a sample of the held-out blocks: the script, not a row
    BERT="--config_name bert-mini --config_overrides num_hidden_layers=1,hidden_size=64,num_attention_heads=1,intermediate_size=128
          --max_steps ${BERT_STEPS:-20} --per_device_train_batch_size 16 --max_eval_samples 64"
    GPT2="--config_name gpt2 --config_overrides n_layer=1,n_embd=64,n_head=2
          --max_steps ${GPT2_STEPS:-10} --per_device_train_batch_size 4 --block_size 256 --max_eval_samples 16"
else
    # bert-mini: 3,000 steps x 256 x 128 = 98.3M tokens, 3.9 min at the 418k tokens/s measured at batch 128 (a
    # larger batch is unlikely to be slower; the guard stops it if it is). GPT-2: 900 steps x 16 x 1024 = 14.7M
    # tokens, 2.0 min at the measured 124k tokens/s. Each guard adds about a minute and a half for tokenizing,
    # compiling and evaluating; the two guards and the set-up stay under ten minutes.
    BERT="--config_name bert-mini --max_steps ${BERT_STEPS:-3000} --per_device_train_batch_size 256
          --per_device_eval_batch_size 512 --learning_rate 1e-3 --warmup_steps 0.05"
    GPT2="--config_name gpt2 --max_steps ${GPT2_STEPS:-900} --per_device_train_batch_size 16 --block_size 1024
          --per_device_eval_batch_size 32 --learning_rate 6e-4 --warmup_steps 0.05"
fi
COMMON="--train_file $BOOKS/$SHARDS --validation_file $BOOKS/validation.txt.xz --test_file $BOOKS/test.txt.xz
        --do_train --do_eval --weight_decay 0.01 --logging_steps 50 --save_strategy no --seed 42
        --report_to none --disable_tqdm True"

run() {  # name, seconds allowed, script and its arguments
    local name=$1 limit=$2; shift 2
    echo "== $name (at most $limit s)"
    local start=$SECONDS status=0
    timeout --signal INT --kill-after 30 "$limit" "$@" --output_dir "$RUNS_DIR/$name" > "$RUNS_DIR/$name.log" 2>&1 \
        || status=$?
    echo "   exit $status after $((SECONDS - start)) s"
    [ "$status" = 0 ] || tail -n 15 "$RUNS_DIR/$name.log"
}
# shellcheck disable=SC2086  # the settings are word lists on purpose
run bert-mini-books "${BERT_TIMEOUT:-330}" $PY run_mlm.py $BERT --tokenizer_name "$DATA_DIR/tokenizers/bert-base-uncased" \
    --max_seq_length 128 $COMMON
# shellcheck disable=SC2086
run gpt2-books "${GPT2_TIMEOUT:-210}" $PY run_clm.py $GPT2 --tokenizer_name "$DATA_DIR/tokenizers/gpt2" $COMMON

$PY - "$RUNS_DIR" <<'PY'
import json, os, sys
root = sys.argv[1]
print(f"\n{'run':16s} {'precision':9s} {'params':>8s} {'tokens seen':>12s} {'tokens/s':>10s} {'MFU':>6s} "
      f"{'val ppl':>9s} {'test ppl':>9s} {'train s':>8s}")
for name in ("bert-mini-books", "gpt2-books"):
    path = os.path.join(root, name, "lmzoo_record.json")
    if os.path.isfile(path):
        r = json.load(open(path))
        t = r.get("throughput") or {}
        mfu = f"{t['mfu']:.1%}" if t.get("mfu") else "-"
        number = lambda key: f"{r[key]:.2f}" if r.get(key) is not None else "-"
        print(f"{name:16s} {r.get('precision', '-'):9s} {r['parameters'] / 1e6:7.1f}M {r.get('tokens_seen', 0):12,} "
              f"{t.get('tokens_per_second', 0):10,.0f} {mfu:>6s} {number('perplexity'):>9s} "
              f"{number('test_perplexity'):>9s} {r.get('wall_time_s', 0):8.0f}")
PY

# Parts under 16 MiB: the bert-mini folder whole (its weights feed the GLUE grid); GPT-2 without its weights.
set +f
cd "$RUNS_DIR"
cp bert-mini-books.log gpt2-books.log "$PACK_DIR/" 2>/dev/null || true
[ -d bert-mini-books ] && tar -cf - bert-mini-books | split -b 15m -d - "$PACK_DIR/bert-mini-books.tar.part"
[ -d gpt2-books ] && tar -cf - --exclude='*.safetensors' --exclude='*.bin' gpt2-books \
    | split -b 15m -d - "$PACK_DIR/gpt2-books.tar.part"
ls -l "$PACK_DIR"
