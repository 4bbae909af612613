"""Benchmark: T5 span-corruption batches per second, lmzoo's vectorised collator vs a per-example Python loop.

    python bench/bench_t5_collator.py [--max-seq-length 512] [--batch-size 32] [--repeats 5] [--seconds 2]

Each repeat collates batches for about --seconds; the table shows the median rate over repeats and the ratio.
Peak RSS is the whole process's (resource.getrusage), read at the end.
"""

import argparse
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lmzoo.t5_span import DataCollatorForT5SpanCorruption, count_noise, merge_back  # noqa: E402

VOCAB_SIZE = 32100
EOS, PAD = 1, 0
SENTINELS = list(range(VOCAB_SIZE - 1, VOCAB_SIZE - 101, -1))  # T5's layout: <extra_id_0> = 32099, counting down


# ---- REFERENCE: a straightforward per-example, per-token Python implementation, for comparison only. ----
class ReferenceLoopCollator:
    """One example at a time, one token at a time, as in Google's random_spans_noise_mask written with lists."""

    def __init__(self, input_length, target_length, noise_density=0.15, mean_noise_span_length=3.0, seed=0):
        self.input_length, self.target_length = input_length, target_length
        self.noise_density, self.mean_noise_span_length = noise_density, mean_noise_span_length
        self.random = random.Random(seed)

    def segment(self, num_items, num_segments):
        first_in_segment = [1] * (num_segments - 1) + [0] * (num_items - num_segments)
        self.random.shuffle(first_in_segment)
        lengths = [1]
        for starts_new in first_in_segment:
            if starts_new:
                lengths.append(1)
            else:
                lengths[-1] += 1
        return lengths

    def noise_mask(self, length):
        num_noise, num_spans = count_noise(length, self.noise_density, self.mean_noise_span_length)
        noise_lengths = self.segment(num_noise, num_spans)
        kept_lengths = self.segment(length - num_noise, num_spans)
        mask = []
        for kept, noise in zip(kept_lengths, noise_lengths):
            mask += [False] * kept + [True] * noise
        return mask

    def corrupt(self, tokens):
        mask = self.noise_mask(len(tokens))
        inputs, targets, span = [], [], -1
        for position, (token, is_noise) in enumerate(zip(tokens, mask)):
            starts_span = is_noise and (position == 0 or not mask[position - 1])
            if starts_span:
                span += 1
                inputs.append(SENTINELS[span])
                targets.append(SENTINELS[span])
            (targets if is_noise else inputs).append(token)
        inputs += [EOS] + [PAD] * (self.input_length - len(inputs) - 1)
        targets += [EOS] + [-100] * (self.target_length - len(targets) - 1)
        return inputs, targets

    def __call__(self, examples):
        pairs = [self.corrupt(list(example["input_ids"])) for example in examples]
        return {
            "input_ids": torch.tensor([inputs for inputs, _ in pairs]),
            "labels": torch.tensor([targets for _, targets in pairs]),
        }
# ---- end of REFERENCE ----


def batches_per_second(collate, examples, seconds):
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        collate(examples)
        done += 1
    return done / elapsed


def check_both(collators, examples):
    """Both must produce exact shapes whose pairs merge back to the raw text."""
    for name, collate in collators.items():
        batch = collate(examples)
        for example, inputs, labels in zip(examples, batch["input_ids"], batch["labels"]):
            assert merge_back(inputs, labels, SENTINELS, EOS) == list(example["input_ids"]), name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per repeat and implementation")
    args = parser.parse_args()

    vectorised = DataCollatorForT5SpanCorruption(
        input_length=args.max_seq_length, sentinel_ids=SENTINELS, eos_token_id=EOS, pad_token_id=PAD, seed=0
    )
    reference = ReferenceLoopCollator(vectorised.input_length, vectorised.target_length, seed=0)
    rng = np.random.default_rng(0)
    examples = [
        {"input_ids": rng.integers(100, VOCAB_SIZE - 200, size=vectorised.raw_length).tolist()}
        for _ in range(args.batch_size)
    ]
    collators = {"lmzoo vectorised": vectorised, "reference loop": reference}
    check_both(collators, examples)

    print(
        f"max_seq_length {args.max_seq_length}: raw {vectorised.raw_length} -> input {vectorised.input_length}, "
        f"target {vectorised.target_length}; batch {args.batch_size}; median of {args.repeats} x {args.seconds:g}s"
    )
    medians = {}
    for name, collate in collators.items():
        rates = [batches_per_second(collate, examples, args.seconds) for _ in range(args.repeats)]
        medians[name] = statistics.median(rates)
        print(f"  {name:<18} {medians[name]:9.1f} batches/s   ({medians[name] * args.batch_size:9.0f} examples/s)")
    print(f"  speed-up: {medians['lmzoo vectorised'] / medians['reference loop']:.1f}x")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"  peak RSS: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
