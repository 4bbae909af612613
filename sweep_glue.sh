#!/usr/bin/env bash
# GLUE grid sweep over run_glue.py, resumable, then the model-zoo tables: `bash sweep_glue.sh --help`.
#
#   bash sweep_glue.sh minilm
#   TASKS="rte mrpc" BATCH_SIZES=32 LEARNING_RATES="5e-5 1e-4" EPOCHS=3 bash sweep_glue.sh outputs/bert-mini -- --fp16
#
# The planning, skipping, failure records and tables live in lmzoo/sweep.py, where they are tested; this wrapper
# only picks the interpreter ($PYTHON, else the project's .venv, else python3) and makes the package importable.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m lmzoo.sweep "$@"
