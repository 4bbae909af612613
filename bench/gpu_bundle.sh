#!/usr/bin/env bash
# Gathers into one folder what bench/gpu_zoo_books.sh needs on a GPU machine with no network, so that the few
# minutes a GPU is lent go to training, not to set-up (53 MB with the default five shards):
#   DIR/data/gutenberg/   the train shards named by SHARDS, validation.txt.xz and test.txt.xz
#   DIR/data/tokenizers/  bert-base-uncased/ and gpt2/
#   DIR/wheels/           datasets and the two packages it needs beyond a usual PyTorch image (dill and
#                         multiprocess), at the versions installed here, for Python PY_VERSION (default 3.12) on
#                         x86-64 Linux, fetched with pip download; WHEELS=0 leaves them out.
#
#   bash bench/gpu_bundle.sh .gpu_bundle
#
# Then, on the GPU machine, from the repository root (../shared/data, so that the records' rerun commands read
# the same as everyone's):
#   mkdir -p ../shared && ln -sfn "$PWD/.gpu_bundle/data" ../shared/data
#   WHEELS=.gpu_bundle/wheels PACK_DIR=<the folder that comes back> bash bench/gpu_zoo_books.sh
# Exit status: 0 done, 2 bad input (nothing written).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# = 1 ] || { echo "usage: bash bench/gpu_bundle.sh DIR" >&2; exit 2; }
DIR=$1
DATA_DIR=${DATA_DIR:-../shared/data}
SHARDS=${SHARDS:-train-0[0-4].txt.xz}
PY=${PYTHON:-python3}
NAME=gpu_bundle
# shellcheck source=bench/gpu_books_inputs.sh
source bench/gpu_books_inputs.sh
[ "$(realpath -m "$DIR/data")" != "$(realpath "$DATA_DIR")" ] \
    || { echo "gpu_bundle: $DIR/data is DATA_DIR itself; name another folder" >&2; exit 2; }
if [ "${WHEELS:-1}" != 0 ]; then
    # The versions tested here, so that the GPU machine runs what the dry run ran.
    pins=$($PY -c 'from importlib.metadata import version as v
print(*(f"{n}=={v(n)}" for n in ("datasets", "dill", "multiprocess")))') \
        || { echo "gpu_bundle: $PY cannot see datasets, dill and multiprocess (set PYTHON)" >&2; exit 2; }
fi

rm -rf "$DIR/data"
mkdir -p "$DIR/data/gutenberg" "$DIR/data/tokenizers"
# shellcheck disable=SC2086  # SHARDS is a pattern on purpose
cp $BOOKS/$SHARDS "$BOOKS/validation.txt.xz" "$BOOKS/test.txt.xz" "$DIR/data/gutenberg/"
cp -r "$DATA_DIR/tokenizers/bert-base-uncased" "$DATA_DIR/tokenizers/gpt2" "$DIR/data/tokenizers/"
if [ "${WHEELS:-1}" != 0 ]; then
    rm -rf "$DIR/wheels"
    # shellcheck disable=SC2086  # pins is a word list
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$DIR/wheels" $pins
fi
du -sh "$DIR"
find "$DIR" -type f | sort
