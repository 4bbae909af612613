# Sourced by the GPU benches (bench/gpu_check.sh, bench/gpu_zoo_books.sh) from the repository root, with PY and
# OUT_ROOT set: offline settings, caches under OUT_ROOT, the wheels in WHEELS=DIR (if given) installed into a
# private folder for a machine that lacks e.g. datasets, lmzoo from the checkout, and one line of versions.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export LMZOO_CACHE_DIR=$OUT_ROOT/cache HF_HOME=$OUT_ROOT/hf TORCHINDUCTOR_CACHE_DIR=$OUT_ROOT/inductor

if [ -n "${WHEELS:-}" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$OUT_ROOT/site" "$WHEELS"/*.whl
    export PYTHONPATH="$OUT_ROOT/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # lmzoo from this checkout, nothing installed
$PY - <<'PY'
import torch, transformers, datasets
print(f"torch {torch.__version__}, transformers {transformers.__version__}, datasets {datasets.__version__}, "
      f"device {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}")
PY
