#!/usr/bin/env python
"""Tokenize-and-pack throughput: lmzoo's batched, multi-process, numpy packing vs a straightforward
per-example implementation, on WikiText-2 raw (valid + test), side by side, with each one's peak RSS.

The baseline is what one writes first: tokenize one paragraph at a time, append its ids and a separator to a
Python list, then cut the list into blocks in a Python loop. Each way is timed up to the form it hands on:
lmzoo's is the Arrow dataset that run_mlm.py trains from, the baseline's its lists of blocks. Both hold the same
blocks: every block is compared, outside the timed part.

    LMZOO_DATA_DIR=../shared/data python bench/bench_preprocessing.py [--repeats 3 --workers N]

By default lmzoo chooses its worker processes as run_mlm.py does: one process for a corpus this small (fewer than
20,000 rows), whose batches the tokenizer's Rust backend spreads over the cores itself; --workers N forces N
`datasets.map` processes (worth it on corpora of hundreds of MB, where their start-up cost is repaid).
"""

import argparse
import hashlib
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def load_inputs(data_dir):
    from lmzoo.args import DataArguments
    from lmzoo.corpus import load_raw_corpus
    from lmzoo.data import mlm_layout
    from lmzoo.tokenizer import load_tokenizer

    wiki = os.path.join(data_dir, "wikitext-2-raw")
    raw = load_raw_corpus(DataArguments(train_file=os.path.join(wiki, "wiki.valid.raw"),
                                        validation_file=os.path.join(wiki, "wiki.test.raw")))
    tokenizer = load_tokenizer(os.path.join(data_dir, "tokenizers", "bert-base-uncased"))
    return raw, tokenizer, mlm_layout(tokenizer, 128)


def lmzoo_way(raw, tokenizer, layout, workers):
    from lmzoo.data import tokenize_corpus

    return tokenize_corpus(raw, tokenizer, layout, num_workers=workers)


def as_array(blocks) -> np.ndarray:
    """Either way's output as one [n_blocks, block_length] array (for the check, not timed)."""
    if isinstance(blocks, list):
        return np.asarray(blocks, dtype=np.int64)
    columns = [blocks[split].data.column("input_ids").combine_chunks() for split in ("train", "validation")]
    return np.concatenate([c.flatten().to_numpy().reshape(len(c), -1) for c in columns]).astype(np.int64)


def per_example_way(raw, tokenizer, layout, workers):
    """Grouped per 1000 rows, as the Hugging Face examples' group_texts (and lmzoo's map batches) do."""
    blocks = []
    body = layout.body_length
    for split in ("train", "validation"):
        texts = raw[split]["text"]
        for first in range(0, len(texts), 1000):
            stream = []
            for text in texts[first:first + 1000]:
                if text and not text.isspace():
                    stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
                    stream.append(layout.separator_id)
            for start in range(0, len(stream) - body + 1, body):
                blocks.append(list(layout.prefix_ids) + stream[start:start + body] + list(layout.suffix_ids))
    return blocks


def timed_child(name, data_dir, workers, queue):
    """One measurement in a fresh process, so each way's peak RSS is its own."""
    import datasets

    datasets.disable_progress_bars()
    raw, tokenizer, layout = load_inputs(data_dir)
    megabytes = sum(len(t.encode("utf-8")) for s in ("train", "validation") for t in raw[s]["text"]) / 1e6
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    blocks = (lmzoo_way if name == "lmzoo" else per_example_way)(raw, tokenizer, layout, workers)
    seconds = time.perf_counter() - start
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    array = as_array(blocks)
    queue.put((megabytes / seconds, peak / 1024, before / 1024, len(array), hashlib.sha1(array.tobytes()).hexdigest()))


def measure(name, data_dir, workers):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    proc = context.Process(target=timed_child, args=(name, data_dir, workers, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("LMZOO_DATA_DIR", "../shared/data"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="map processes (default: lmzoo's choice)")
    args = parser.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="lmzoo-bench-")  # keep the datasets cache out of ~/.cache
    results = {"lmzoo": [], "per-example": []}
    for _ in range(args.repeats):
        for name in results:
            results[name].append(measure(name, args.data_dir, args.workers))
    ours, base = results["lmzoo"], results["per-example"]
    assert ours[0][3] == base[0][3] and ours[0][4] == base[0][4], "the two ways must build the same blocks"
    print(f"WikiText-2 raw valid+test, bert-base-uncased tokenizer, blocks of 128; "
          f"map processes: {args.workers or 'lmzoo default'}; "
          f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}; "
          f"median of {args.repeats}; {ours[0][3]} blocks")
    for name, runs in results.items():
        print(f"{name:12s} {statistics.median(r[0] for r in runs):7.2f} MB/s   peak RSS "
              f"{statistics.median(r[1] for r in runs):6.0f} MiB (after loading: {statistics.median(r[2] for r in runs):.0f})")
    print(f"speed-up: {statistics.median(r[0] for r in ours) / statistics.median(r[0] for r in base):.2f}x")


if __name__ == "__main__":
    main()
