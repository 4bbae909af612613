#!/usr/bin/env python
"""Sparse MLM head vs the dense head: tokens/s side by side, and the per-step losses of the two paths.

bert-tiny (L2/H128) with the real bert-base-uncased vocabulary (30522), seq 128, batch 32, AdamW, fp32, on
WikiText-2 blocks. Both paths train the same initial weights on the same masked batches; the dense path is the
stock `BertForMaskedLM(labels=...)` loss. Prints median tokens/s over repeats, the ratio, peak RSS, and the
largest relative loss difference over the loss-check steps.

    LMZOO_DATA_DIR=../shared/data python bench/bench_sparse_mlm_head.py [--steps 10 --repeats 3]
"""

import argparse
import copy
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from transformers import AutoModelForMaskedLM  # noqa: E402

from lmzoo.collators import MlmCollator  # noqa: E402
from lmzoo.presets import load_config  # noqa: E402
from lmzoo.tokenizer import load_tokenizer  # noqa: E402
from lmzoo.objectives import MaskedLmObjective  # noqa: E402


def blocks_from_wikitext(data_dir, tokenizer, length, count):
    text = open(os.path.join(data_dir, "wikitext-2-raw", "wiki.valid.raw"), encoding="utf-8").read()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    body = length - 2
    return [[tokenizer.cls_token_id] + ids[i * body:(i + 1) * body] + [tokenizer.sep_token_id]
            for i in range(min(count, len(ids) // body))]


def train_losses(model, batches, sparse: bool):
    """Per-step losses of `len(batches)` AdamW steps, and the seconds each step took."""
    objective = MaskedLmObjective(model, sparse_head=True) if sparse else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses, seconds = [], []
    model.train()
    for batch in batches:
        start = time.perf_counter()
        if sparse:
            loss_sum, count = objective.train_loss_sum(model, batch)
            loss = loss_sum / count
        else:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - start)
        losses.append(loss.item())
    if objective is not None:
        objective.sparse.remove()
    return losses, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("LMZOO_DATA_DIR", "../shared/data"))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loss-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args()

    tokenizer = load_tokenizer(os.path.join(args.data_dir, "tokenizers", "bert-base-uncased"))
    blocks = blocks_from_wikitext(args.data_dir, tokenizer, args.seq_len, args.batch_size * args.loss_steps)
    collator = MlmCollator(tokenizer, seed=0)
    batches = [collator([{"input_ids": b} for b in blocks[i:i + args.batch_size]])
               for i in range(0, len(blocks) - args.batch_size + 1, args.batch_size)]
    batches = [{k: v for k, v in b.items()} for b in batches][: args.loss_steps]
    config = load_config("bert-tiny")
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0  # identical paths, step by step
    torch.manual_seed(0)
    initial = AutoModelForMaskedLM.from_config(config)
    print(f"bert-tiny, vocab {config.vocab_size}, seq {args.seq_len}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, fp32")

    # 1) the same loss: both paths from the same weights over the same batches
    dense_losses, _ = train_losses(copy.deepcopy(initial), batches, sparse=False)
    sparse_losses, _ = train_losses(copy.deepcopy(initial), batches, sparse=True)
    worst = max(abs(a - b) / abs(a) for a, b in zip(dense_losses, sparse_losses))
    print(f"losses over {len(batches)} steps: dense {dense_losses[0]:.5f} -> {dense_losses[-1]:.5f}, "
          f"sparse {sparse_losses[0]:.5f} -> {sparse_losses[-1]:.5f}; max relative difference {worst:.2e}")

    # 2) speed: alternate the two paths, median over repeats of the per-step time (first step of each skipped)
    rates = {"dense": [], "sparse": []}
    timed = batches[: args.steps + 1]
    for _ in range(args.repeats):
        for name in ("dense", "sparse"):
            _, seconds = train_losses(copy.deepcopy(initial), timed, sparse=(name == "sparse"))
            tokens = args.batch_size * args.seq_len
            rates[name].append(tokens / statistics.median(seconds[1:]))
    dense, sparse = statistics.median(rates["dense"]), statistics.median(rates["sparse"])
    print(f"dense head : {dense:10,.0f} tokens/s (median of {args.repeats})")
    print(f"sparse head: {sparse:10,.0f} tokens/s (median of {args.repeats})")
    print(f"speed-up: {sparse / dense:.2f}x")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
