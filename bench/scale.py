#!/usr/bin/env python
"""How preprocessing scales with the corpus: time, memory and disk of `--prepare_only` at growing sizes.

Builds training corpora of increasing size from the book corpus in $LMZOO_DATA_DIR/gutenberg (whole books, in
order, decompressed into a scratch folder that is deleted afterwards, never committed), then runs the real
preparation path, `run_mlm.py --prepare_only` with the bert-base-uncased tokenizer and `run_clm.py
--prepare_only` with the gpt2 tokenizer, each in a fresh --cache_dir, and measures from outside:

* MB/s: text megabytes over the wall time of the whole command (reading, paragraph joining, tokenizing, packing);
* peak RSS: the largest sum over the process and its tokenizing workers, sampled every 0.2 s;
* peak extra disk: the largest size of the --cache_dir (the datasets copy of the raw text, the paragraph join,
  the tokenized blocks), sampled every 0.2 s, as a multiple of the text;
* cache: the tokenized cache alone at the end, as a multiple of the text.

Then the strided (sliding-window) evaluation's memory on validation texts of growing size: the peak RSS that
holding and tokenizing the text adds, streamed (what run_clm.py --eval_stride does) and tokenized in one call (as
before), with the model's forward passes stubbed out (they cost the same per batch whatever the text's length). Ends with one verdict line per target of the scaling
issue, and writes the numbers to --out (JSON).

    LMZOO_DATA_DIR=../shared/data python bench/scale.py [--sizes 25 100 300] [--out bench/results/scale.json]
"""

import argparse
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 1e6


def write_corpus(gutenberg: str, path: str, megabytes: float) -> int:
    """Whole books from the train shards, in order, until `megabytes` of text; returns the bytes written."""
    written, limit = 0, megabytes * MB
    with open(path, "wb") as out:
        for shard in sorted(f for f in os.listdir(gutenberg) if f.startswith("train-")):
            with lzma.open(os.path.join(gutenberg, shard), "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    chunk = chunk[: int(limit - written)]
                    out.write(chunk)
                    written += len(chunk)
                    if written >= limit:
                        return written
    return written


def folder_bytes(path: str) -> int:
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # renamed or removed while we looked
                pass
    return total


def measured(command: list[str], env: dict, watch_dir: str | None) -> dict:
    """Run `command`; its wall time, the peak RSS of its process tree and the peak size of `watch_dir`."""
    peaks = {"rss": 0, "disk": 0}
    started = time.time()
    proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = threading.Event()

    def sample():
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peaks["rss"] = max(peaks["rss"], sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            if watch_dir:
                peaks["disk"] = max(peaks["disk"], folder_bytes(watch_dir))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    seconds = time.time() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"bench/scale.py: {' '.join(command[:2])} failed ({proc.returncode}):\n{output[-3000:]}")
    return {"seconds": seconds, "peak_rss": peaks["rss"], "peak_disk": peaks["disk"], "log": output}


def prepare(kind: str, data_dir: str, train: str, validation: str, cache: str, env: dict) -> dict:
    script, tokenizer, length = {"mlm": ("run_mlm.py", "bert-base-uncased", ["--max_seq_length", "128"]),
                                 "clm": ("run_clm.py", "gpt2", ["--block_size", "1024"])}[kind]
    config = "bert-base" if kind == "mlm" else "gpt2"
    command = [sys.executable, script, "--config_name", config, "--tokenizer_name",
               os.path.join(data_dir, "tokenizers", tokenizer), "--train_file", train, "--validation_file",
               validation, *length, "--cache_dir", cache, "--prepare_only"]
    result = measured(command, env, cache)
    tokenized = os.path.join(cache, "tokenized")
    result["cache_bytes"] = folder_bytes(tokenized)
    result["summary"] = next((line for line in result.pop("log").splitlines() if "[lmzoo] tokenized " in line), "")
    return result


STRIDED_CHILD = """
import lzma, resource, sys
from lmzoo import generation
from lmzoo.tokenizer import load_tokenizer
path, tokenizer_path, mode = sys.argv[1:4]
with open(path, encoding="utf-8") as f:
    documents = [d for d in f.read().split("\\n\\n") if d.strip()]
tokenizer = load_tokenizer(tokenizer_path)
generation._score_windows = lambda model, group, device: (1.0, len(group))  # counts windows; the model's share
# of the memory is fixed per batch
class Model:
    def eval(self): pass
    def parameters(self):
        import torch
        yield torch.zeros(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if mode == "streamed":  # what run_clm.py --eval_stride does
    ids = generation.joined_token_ids(iter(documents), tokenizer)
else:  # the text joined and tokenized in one call, as before the streaming change
    ids = tokenizer("\\n\\n".join(documents), add_special_tokens=False)["input_ids"]
result = generation.strided_perplexity(Model(), ids, 1024, 512, 8)
print(result["strided_tokens"], (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def strided_memory(data_dir: str, validation: str, mode: str, env: dict) -> dict:
    """Peak RSS the strided evaluation adds over its text (ids held, tokenization), with the model's forward
    passes stubbed out: those cost the same per batch of windows whatever the text's length."""
    output = subprocess.run([sys.executable, "-c", STRIDED_CHILD, validation,
                             os.path.join(data_dir, "tokenizers", "gpt2"), mode], env=env, cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    return {"windows": int(output[-2]), "extra_rss": int(output[-1])}


def validation_text(gutenberg: str, path: str, megabytes: float) -> int:
    with lzma.open(os.path.join(gutenberg, "validation.txt.xz"), "rb") as f, open(path, "wb") as out:
        data = f.read(int(megabytes * MB))
        out.write(data)
    return len(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="*", default=[25, 100, 300],
                        help="Corpus sizes in MB (none: only the strided evaluation).")
    parser.add_argument("--strided_sizes", type=float, nargs="+", default=[3, 6, 12],
                        help="Validation text sizes (MB) for the strided evaluation (above about 6 MB, the pieces "
                             "lmzoo.generation tokenizes at once have reached their full size).")
    parser.add_argument("--out", default=None, help="Write the measurements here (JSON).")
    parser.add_argument("--workdir", default=None, help="Scratch folder (default: a temporary one, removed).")
    args = parser.parse_args()
    data_dir = os.environ.get("LMZOO_DATA_DIR")
    if not data_dir or not os.path.isdir(os.path.join(data_dir, "gutenberg")):
        sys.exit("bench/scale.py: set LMZOO_DATA_DIR to the shared data folder (it needs gutenberg/ and tokenizers/)")
    gutenberg = os.path.join(data_dir, "gutenberg")
    work = args.workdir or tempfile.mkdtemp(prefix="lmzoo-scale-")
    os.makedirs(work, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": os.path.join(work, "hf"),
           "TORCHINDUCTOR_CACHE_DIR": os.path.join(work, "inductor")}
    cores = len(os.sched_getaffinity(0))
    print(f"bench/scale.py: {cores} cores; preparation of gutenberg book text at {args.sizes} MB; strided "
          f"evaluation of {args.strided_sizes} MB", flush=True)
    rows = []
    try:
        validation = os.path.join(work, "validation.txt")
        validation_text(gutenberg, validation, 2)
        for size in args.sizes:
            train = os.path.join(work, f"train-{size:g}MB.txt")
            text_bytes = write_corpus(gutenberg, train, size) + os.path.getsize(validation)
            for kind in ("mlm", "clm"):
                cache = os.path.join(work, f"cache-{kind}-{size:g}")
                result = prepare(kind, data_dir, train, validation, cache, env)
                shutil.rmtree(cache, ignore_errors=True)
                row = {"kind": kind, "text_mb": text_bytes / MB, "seconds": result["seconds"],
                       "mb_per_s": text_bytes / MB / result["seconds"], "peak_rss_mib": result["peak_rss"] / 2**20,
                       "peak_disk_x": result["peak_disk"] / text_bytes, "cache_x": result["cache_bytes"] / text_bytes,
                       "summary": result["summary"]}
                rows.append(row)
                print(f"{kind} {row['text_mb']:7.1f} MB: {row['seconds']:6.1f} s  {row['mb_per_s']:5.2f} MB/s  "
                      f"peak RSS {row['peak_rss_mib']:6.0f} MiB  peak extra disk {row['peak_disk_x']:.2f}x  "
                      f"cache {row['cache_x']:.2f}x", flush=True)
            os.remove(train)
        strided_rows = []
        for size in args.strided_sizes:
            path = os.path.join(work, f"validation-{size:g}MB.txt")
            text_bytes = validation_text(gutenberg, path, size)
            for mode in ("streamed", "one call"):
                result = strided_memory(data_dir, path, mode.replace(" ", "_"), env)
                strided_rows.append({"mode": mode, "text_mb": text_bytes / MB, **result})
                print(f"strided eval ids, {mode:8s} {text_bytes / MB:5.1f} MB ({result['windows']:,} windows): "
                      f"+{result['extra_rss'] / 2**20:6.0f} MiB peak RSS", flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    largest = [r for r in rows if r["text_mb"] == max(r["text_mb"] for r in rows)] if rows else []
    print("verdicts (largest size):")
    for r in largest:
        print(f"  {r['kind']}: peak extra disk {r['peak_disk_x']:.2f}x the text (target <= 1.5x): "
              f"{'met' if r['peak_disk_x'] <= 1.5 else 'NOT met'}")
        print(f"  {r['kind']}: tokenized cache {r['cache_x']:.2f}x the text (target <= 0.6x, vocabulary < 65,536): "
              f"{'met' if r['cache_x'] <= 0.6 else 'NOT met'}")
    streamed = [r for r in strided_rows if r["mode"] == "streamed"]
    growth = streamed[-1]["extra_rss"] / streamed[-2]["extra_rss"]
    ratio = streamed[-1]["text_mb"] / streamed[-2]["text_mb"]
    print(f"  strided eval: extra peak RSS x{growth:.2f} for x{ratio:.1f} the validation text (target: flat): "
          f"{'met' if growth < 1.1 else 'NOT met'}")
    for kind in ("mlm", "clm") if rows else ():
        speeds = [r["mb_per_s"] for r in rows if r["kind"] == kind]
        print(f"  {kind}: {min(speeds):.2f}-{max(speeds):.2f} MB/s over the sizes (time linear in the text when "
              "this range is narrow)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"cores": cores, "prepare": rows, "strided": strided_rows}, f, indent=1)


if __name__ == "__main__":
    main()
