#!/usr/bin/env python
"""--streaming on the book corpus: how fast the stream makes blocks, and what a resume costs, side by side.

On the first --shards xz shards of $LMZOO_DATA_DIR/gutenberg (compressed, read as they decompress), with the
bert-base-uncased tokenizer and blocks of 128 (run_mlm.py's layout), a shuffle buffer of 10,000 blocks:

* producing: blocks/s and text MB/s of one pass of the stream (the background reader's own rate, what training
  can consume at most), and the peak RSS it adds; beside it, the tokenized-cache path on the same text (the
  same function in `datasets.map`, all cores), whose blocks are stored instead;
* resuming at block K (K = --resume_at of a pass, deep in the last shard): the seconds to the first block when
  the stream seeks to its saved position (what a resumed --streaming run does), and when the first K blocks are
  produced and thrown away (what the Trainer's batch skipping does, transformers#11284). Both give the same
  block (checked). Medians over --repeats.

    LMZOO_DATA_DIR=../shared/data python bench/bench_streaming.py [--shards 2] [--repeats 3]
"""

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lmzoo.args import DataArguments  # noqa: E402
from lmzoo.corpus import load_raw_corpus  # noqa: E402
from lmzoo.data import load_tokenized, mlm_layout  # noqa: E402
from lmzoo.streaming import BlockStream  # noqa: E402


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resume_at", type=float, default=0.9, help="where to resume, as a fraction of a pass")
    options = parser.parse_args()
    data_dir = os.environ.get("LMZOO_DATA_DIR")
    if not data_dir or not os.path.isdir(os.path.join(data_dir, "gutenberg")):
        sys.exit("set LMZOO_DATA_DIR to the shared data folder (it needs gutenberg/ and tokenizers/)")
    from transformers import AutoTokenizer

    shards = sorted(glob.glob(os.path.join(data_dir, "gutenberg", "train-*.txt.xz")))[: options.shards]
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(data_dir, "tokenizers", "bert-base-uncased"))
    layout = mlm_layout(tokenizer, 128)
    scratch = tempfile.mkdtemp(prefix="lmzoo-bench-stream-")
    os.environ.setdefault("HF_HOME", os.path.join(scratch, "hf"))
    common = dict(train_file=os.path.join(data_dir, "gutenberg", f"train-0[0-{len(shards) - 1}].txt.xz"),
        validation_file=os.path.join(data_dir, "gutenberg", "validation.txt.xz"), max_seq_length=128)
    print(f"corpus: {common['train_file']} ({len(shards)} xz shards); bert-base-uncased, blocks of 128")

    # --- producing ------------------------------------------------------------------------------------------
    streamed = load_tokenized(DataArguments(streaming=True, **common), os.path.join(scratch, "s"),
                              load_raw_corpus(DataArguments(streaming=True, **common), os.path.join(scratch, "s")),
                              tokenizer, layout, "mlm")
    stream = streamed["train"]
    stream.max_passes = 1
    before, peak, blocks = rss_mib(), 0.0, 0
    started = time.perf_counter()
    for _ in stream:
        blocks += 1
        if blocks % 5000 == 0:
            peak = max(peak, rss_mib())
    stream_seconds = time.perf_counter() - started
    import lzma

    text_bytes = sum(len(chunk) for p in shards for chunk in iter(lzma.open(p).read1, b""))
    raw = load_raw_corpus(DataArguments(**common), os.path.join(scratch, "m"))
    started = time.perf_counter()
    stored = load_tokenized(DataArguments(**common), os.path.join(scratch, "m"), raw, tokenizer, layout, "mlm")
    map_seconds = time.perf_counter() - started
    print(f"\nproducing one pass: {text_bytes / 1e6:,.0f} MB of text")
    print(f"  stream (1 reader thread, tokenizer threads)   {blocks:>9,} blocks  {stream_seconds:6.1f} s  "
          f"{blocks / stream_seconds:7,.0f} blocks/s  {text_bytes / 1e6 / stream_seconds:5.2f} MB/s  "
          f"peak RSS +{max(peak - before, 0):,.0f} MiB  disk for the blocks: 0")
    print(f"  tokenized cache (datasets.map, all cores)     {len(stored['train']):>9,} blocks  {map_seconds:6.1f} s  "
          f"{len(stored['train']) / map_seconds:7,.0f} blocks/s  {text_bytes / 1e6 / map_seconds:5.2f} MB/s  "
          f"(includes the validation split)")

    # --- resuming -------------------------------------------------------------------------------------------
    at = int(blocks * options.resume_at)
    saved = os.path.join(scratch, "checkpoint")
    os.makedirs(saved)
    first = BlockStream(stream.source, stream.pack, start=stream.start, shuffle_buffer=stream.shuffle_buffer,
                        seed=stream.seed, settings=stream.settings, max_passes=1)
    feed = iter(first)
    for _ in range(at):
        next(feed)
    expected = next(feed)
    first.save_state(saved, at)
    feed.close()
    seek, skip = [], []
    for _ in range(options.repeats):
        started = time.perf_counter()
        resumed = BlockStream(stream.source, stream.pack, start=stream.start, shuffle_buffer=stream.shuffle_buffer,
                              seed=stream.seed, settings=stream.settings, max_passes=1)
        resumed.load_state(saved)
        got = next(iter(resumed))
        seek.append(time.perf_counter() - started)
        assert got == expected, "the resumed stream gave another block"
        started = time.perf_counter()
        skipping = iter(BlockStream(stream.source, stream.pack, start=stream.start,
                                    shuffle_buffer=stream.shuffle_buffer, seed=stream.seed, max_passes=1))
        for _ in range(at):
            next(skipping)
        got = next(skipping)
        skip.append(time.perf_counter() - started)
        skipping.close()
        assert got == expected, "skipping gave another block"
    seek_s, skip_s = statistics.median(seek), statistics.median(skip)
    print(f"\nresuming at block {at:,} of {blocks:,} (medians of {options.repeats}; the same block both ways)")
    print(f"  seek to the saved position (--streaming resume)  {seek_s:6.2f} s")
    print(f"  produce and skip {at:,} blocks (batch skipping)  {skip_s:6.2f} s")
    print(f"  ratio: the seek is {skip_s / seek_s:,.1f}x faster")
    import shutil

    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
