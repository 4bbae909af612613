# Sourced by bench/gpu_zoo_books.sh and bench/gpu_bundle.sh with NAME, DATA_DIR and SHARDS set: the files both
# read (the held-out books, the two tokenizers, the train shards), checked before anything is written; the first
# one missing is named in one line, exit status 2. Sets BOOKS, the corpus folder, for the caller.
BOOKS=$DATA_DIR/gutenberg
for f in "$BOOKS/validation.txt.xz" "$BOOKS/test.txt.xz" "$DATA_DIR/tokenizers/bert-base-uncased/vocab.txt" \
         "$DATA_DIR/tokenizers/gpt2/vocab.json"; do
    [ -f "$f" ] || { echo "$NAME: $f is missing (DATA_DIR=$DATA_DIR)" >&2; exit 2; }
done
compgen -G "$BOOKS/$SHARDS" >/dev/null || { echo "$NAME: no train shard matches $BOOKS/$SHARDS" >&2; exit 2; }
