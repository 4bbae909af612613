#!/usr/bin/env bash
# GPU check: the three pretraining scripts with bf16 on one CUDA GPU for a few hundred steps each, plus a 1-GPU
# torchrun run, then a table of tokens/s and MFU per run. Offline: the corpus is the embedded demo corpus.
#
#   bash bench/gpu_check.sh                 # on a GPU machine, from the repository root (about 5 minutes)
#   STEPS=20 QUICK=1 bash bench/gpu_check.sh  # a smoke test of the script itself with tiny models (CPU is fine)
#
# Needs torch, transformers and datasets where it runs; installs lmzoo itself with `pip install --no-deps -e .`.
# WHEELS=DIR installs the wheels in DIR first into a private folder (for a machine that lacks e.g. datasets).
# TOKENIZERS=DIR may hold the real gpt2/ and bert-base-uncased/ tokenizer folders (else tokenizers are trained on
# the demo corpus, with the presets' vocabulary sizes where the corpus allows).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-300}
OUT_ROOT=${OUT_ROOT:-${TMPDIR:-/tmp}/lmzoo-gpu-check}
PY=${PYTHON:-python3}
# shellcheck source=bench/gpu_env.sh
source bench/gpu_env.sh
rm -rf "$OUT_ROOT/runs"
mkdir -p "$OUT_ROOT/runs"

tok() { [ -n "${TOKENIZERS:-}" ] && [ -d "$TOKENIZERS/$1" ] && echo "--tokenizer_name $TOKENIZERS/$1" || true; }
if [ -n "${QUICK:-}" ]; then
    MLM="--config_name bert-mini --config_overrides num_hidden_layers=1 --vocab_size 2000"
    CLM="--config_name gpt2 --config_overrides n_layer=1,n_embd=64,n_head=2 --vocab_size 2000 --block_size 128"
    T5="--config_name t5-small --config_overrides num_layers=1,num_decoder_layers=1,d_model=64,d_ff=128,num_heads=2 --vocab_size 2000 --max_seq_length 128"
else
    MLM="--config_name bert-mini $(tok bert-base-uncased) --per_device_train_batch_size 128 --max_seq_length 128"
    CLM="--config_name gpt2 $(tok gpt2) --per_device_train_batch_size 16 --block_size 1024"
    T5="--config_name t5-small --vocab_size 16000 --per_device_train_batch_size 64 --max_seq_length 512"
fi
COMMON="--dataset_name demo --do_train --do_eval --max_steps $STEPS --max_eval_samples 64 --logging_steps 50
        --save_strategy no --disable_tqdm True --dataloader_num_workers 4 --learning_rate 5e-4 --overwrite_output_dir"

run() {  # name, launcher..., script args...
    local name=$1; shift
    echo "== $name"
    local start=$SECONDS
    if "$@" --output_dir "$OUT_ROOT/runs/$name" $COMMON > "$OUT_ROOT/runs/$name.log" 2>&1; then
        echo "   done in $((SECONDS - start)) s"
    else
        echo "   FAILED ($((SECONDS - start)) s); last lines:"; tail -n 15 "$OUT_ROOT/runs/$name.log"
    fi
}
run mlm-bert-mini   $PY run_mlm.py $MLM
run clm-gpt2        $PY run_clm.py $CLM
run t5-small        $PY run_t5_span.py $T5
run torchrun-1gpu-gpt2 $PY -m torch.distributed.run --standalone --nproc_per_node 1 run_clm.py $CLM

$PY - "$OUT_ROOT/runs" <<'PY'
import json, os, sys
root = sys.argv[1]
print(f"\n{'run':22s} {'precision':9s} {'params':>8s} {'tokens/s':>12s} {'MFU':>7s} {'eval_loss':>9s}  peak from")
for name in sorted(os.listdir(root)):
    path = os.path.join(root, name, "lmzoo_record.json")
    if not os.path.isfile(path):
        continue
    r = json.load(open(path))
    t = r.get("throughput") or {}
    mfu = f"{t['mfu']:.1%}" if t.get("mfu") else "-"
    loss = f"{r['eval_loss']:.3f}" if r.get("eval_loss") is not None else "-"
    print(f"{name:22s} {r['precision']:9s} {r['parameters'] / 1e6:7.1f}M {t.get('tokens_per_second', 0):12,.0f} "
          f"{mfu:>7s} {loss:>9s}  {t.get('peak_source', '')}")
PY
