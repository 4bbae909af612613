#!/usr/bin/env python
"""Training throughput through the Trainer path, steady state, ours vs a plain Hugging Face Trainer, side by side.

    python bench/gpu_throughput.py --output bench/results/gpu_throughput.json    # a CUDA GPU: about 8 minutes
    python bench/gpu_throughput.py --tiny                                        # the script itself, on a CPU

Synthetic token blocks (no download, no tokenizer files: a word-level tokenizer of the real vocabulary sizes is
built in memory), so every step is a new batch and no epoch restarts, and the timing starts after the warm-up
(lmzoo.callbacks.ThroughputCallback: the first steps, which pay for allocation and compilation, are left out).
Models: GPT-2 124M at 1024 tokens, BERT-base masked LM at 128 and 512, T5-base span corruption at 512 -> 114.

Rows per model, each adding one change to the row above, so the gain of each is visible:
  plain Trainer            transformers.Trainer with default flags (fp32) and the library's collators
  plain Trainer, bf16      the same with --bf16
  lmzoo, eager             lmzoo's objective, collators and trainer (no host sync per step, sparse MLM head,
                           no all-ones mask), bf16, TF32, fused AdamW, pinned persistent workers
  + shapes                 vocabulary padded to a multiple of 64; GPT-2 with the fused tanh GELU
  + compile                torch.compile
  + batch                  twice the micro-batch (when it fits)
Each row: tokens/s, MFU (lmzoo.flops), peak GPU memory, the attention kernel the profiler saw, and the speed-up
over the plain Trainer. The device, torch and transformers versions head the output.
"""

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WARMUP_STEPS, TIMED_STEPS = 10, 30
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ATTENTION_OPS = {"_scaled_dot_product_flash_attention": "flash", "_scaled_dot_product_efficient_attention":
                 "mem-efficient", "_scaled_dot_product_cudnn_attention": "cudnn",
                 "_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)", "_efficient_attention_forward":
                 "mem-efficient", "_flash_attention_forward": "flash", "_scaled_dot_product_attention_math": "math (unfused)",
                 "bmm": "unfused (bmm + softmax)"}


def word_level_tokenizer(vocab_size: int, t5: bool = False):
    """A real fast tokenizer with `vocab_size` entries (specials first), built in memory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = SPECIALS + ([f"<extra_id_{i}>" for i in range(100)] + ["</s>"] if t5 else [])
    vocab = {token: i for i, token in enumerate(specials)}
    vocab.update({f"w{i}": i for i in range(len(vocab), vocab_size)})
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    extra = {"eos_token": "</s>"} if t5 else {"cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", **extra)


class SyntheticBlocks(torch.utils.data.Dataset):
    """`size` blocks of `length` random ids in [first, last), each made from its own index (no memory held)."""

    def __init__(self, size: int, length: int, first: int, last: int, prefix=(), suffix=()):
        self.size, self.length, self.first, self.last = size, length, first, last
        self.prefix, self.suffix = list(prefix), list(suffix)

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        body = torch.randint(self.first, self.last, (self.length - len(self.prefix) - len(self.suffix),),
                             generator=generator)
        return {"input_ids": self.prefix + body.tolist() + self.suffix}


def model_specs(tiny: bool) -> list[dict]:
    from transformers import BertConfig, GPT2Config, T5Config

    if tiny:
        gpt2 = GPT2Config(n_layer=1, n_embd=64, n_head=2, vocab_size=1000, n_positions=128)
        bert = BertConfig(num_hidden_layers=1, hidden_size=64, num_attention_heads=2, intermediate_size=128,
                          vocab_size=1000)
        t5 = T5Config(num_layers=1, num_decoder_layers=1, d_model=64, d_ff=128, num_heads=2, d_kv=32, vocab_size=1000)
        return [dict(name="gpt2-tiny", kind="clm", config=gpt2, length=128, batch=4),
                dict(name="bert-tiny-mlm", kind="mlm", config=bert, length=64, batch=8),
                dict(name="t5-tiny-span", kind="t5", config=t5, length=64, batch=4)]
    gpt2 = GPT2Config()  # 124M, 50,257 tokens, 1024 positions
    bert = BertConfig()  # base, 30,522 tokens
    t5 = T5Config(d_model=768, d_ff=3072, num_layers=12, num_heads=12, d_kv=64, vocab_size=32128)
    return [dict(name="gpt2-124M", kind="clm", config=gpt2, length=1024, batch=16),
            dict(name="bert-base-mlm-128", kind="mlm", config=bert, length=128, batch=128),
            dict(name="bert-base-mlm-512", kind="mlm", config=bert, length=512, batch=32),
            dict(name="t5-base-span-512", kind="t5", config=t5, length=512, batch=32)]


VARIANTS = [  # name, plain Trainer?, bf16, lmzoo shapes, compile, batch factor
    ("plain Trainer", True, False, False, False, 1),
    ("plain Trainer, bf16", True, True, False, False, 1),
    ("lmzoo, eager", False, True, False, False, 1),
    ("+ shapes", False, True, True, False, 1),
    ("+ compile", False, True, True, True, 1),
    ("+ batch", False, True, True, True, 2),
]


def build(spec: dict, plain: bool, shapes: bool):
    """(model, tokenizer, collator, dataset factory, objective or None, tokens per sample, head fraction, target)."""
    import copy

    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, DataCollatorForLanguageModeling, \
        T5ForConditionalGeneration

    from lmzoo.collators import CausalLmCollator, MlmCollator
    from lmzoo.t5_span import DataCollatorForT5SpanCorruption
    from lmzoo.objectives import CausalLmObjective, MaskedLmObjective, Seq2SeqObjective

    config = copy.deepcopy(spec["config"])
    kind, length = spec["kind"], spec["length"]
    tokenizer = word_level_tokenizer(config.vocab_size, t5=kind == "t5")
    if shapes:
        config.vocab_size = -(-config.vocab_size // 64) * 64
        if kind == "clm":
            config.activation_function = "gelu_pytorch_tanh"
    first = len(SPECIALS) + (101 if kind == "t5" else 0)
    if kind == "clm":
        model = AutoModelForCausalLM.from_config(config)
        collator = (DataCollatorForLanguageModeling(tokenizer, mlm=False) if plain
                    else CausalLmCollator(tokenizer.pad_token_id))
        data = lambda n: SyntheticBlocks(n, length, first, len(tokenizer))  # noqa: E731
        return model, tokenizer, collator, data, None if plain else CausalLmObjective(), length, 1.0, None
    if kind == "mlm":
        model = AutoModelForMaskedLM.from_config(config)
        collator = (DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15) if plain
                    else MlmCollator(tokenizer, 0.15, sparse_positions=True))
        data = lambda n: SyntheticBlocks(n, length, first, len(tokenizer), [tokenizer.cls_token_id],  # noqa: E731
                                         [tokenizer.sep_token_id])
        objective = None if plain else MaskedLmObjective(model, sparse_head=True)
        return model, tokenizer, collator, data, objective, length, 1.0 if plain else 0.15, None
    config.decoder_start_token_id = tokenizer.pad_token_id
    model = T5ForConditionalGeneration(config)
    collator = DataCollatorForT5SpanCorruption(tokenizer, input_length=length, seed=0)
    data = lambda n: SyntheticBlocks(n, collator.raw_length, first, len(tokenizer))  # noqa: E731
    return (model, tokenizer, collator, data, None if plain else Seq2SeqObjective(), length, 1.0,
            collator.target_length)


def attention_kernel(trainer) -> str:
    """The attention ops the profiler saw in one more training step (after the timed ones)."""
    from torch.profiler import ProfilerActivity, profile

    batch = next(iter(trainer.get_train_dataloader()))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        trainer.training_step(trainer.model_wrapped, batch)
    names = {event.key.split("::")[-1] for event in prof.key_averages()}
    found = [label for op, label in ATTENTION_OPS.items() if op in names and op != "bmm"]
    return ", ".join(sorted(set(found))) or ("unfused (bmm + softmax)" if "bmm" in names else "none seen")


def measure(spec: dict, variant: tuple, output_dir: str, warmup: int, timed: int) -> dict:
    from transformers import Trainer, TrainingArguments

    from lmzoo.callbacks import ThroughputCallback
    from lmzoo.flops import device_peak_flops, flops_per_token, precision_of
    from lmzoo.trainer import LmTrainer

    name, plain, bf16, shapes, compiled, factor = variant
    cuda = torch.cuda.is_available()
    model, tokenizer, collator, data, objective, tokens, head_fraction, target = build(spec, plain, shapes)
    batch = spec["batch"] * factor
    steps = warmup + timed
    lmzoo_flags = {} if plain else dict(tf32=cuda or None, optim="adamw_torch_fused" if cuda else "adamw_torch",
                                        dataloader_num_workers=2, dataloader_persistent_workers=True,
                                        dataloader_pin_memory=cuda)
    args = TrainingArguments(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch,
                             learning_rate=1e-4, bf16=bf16 and cuda, torch_compile=compiled, save_strategy="no",
                             logging_steps=10**6, report_to=[], disable_tqdm=True, use_cpu=not cuda,
                             **lmzoo_flags)
    peak, source = device_peak_flops(precision_of(args))
    meter = ThroughputCallback(tokens, flops_per_token(model, tokens, head_fraction, target), peak, source,
                               warmup_steps=warmup)
    common = dict(model=model, args=args, train_dataset=data(steps * batch + batch), data_collator=collator,
                  callbacks=[meter])
    trainer = Trainer(**common) if plain else LmTrainer(**common, objective=objective)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        trainer.train()
    except torch.OutOfMemoryError:
        return {"model": spec["name"], "variant": name, "batch": batch, "error": "out of memory"}
    summary = meter.summary()
    row = {"model": spec["name"], "variant": name, "batch": batch, "length": tokens,
           "tokens_per_second": summary.get("tokens_per_second"), "mfu": summary.get("mfu"),
           "timed_steps": summary.get("timed_steps"), "peak_memory_gib":
               round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
           "vocab_rows": model.get_input_embeddings().num_embeddings, "peak_source": source}
    with contextlib.suppress(Exception):  # the kernel column is informative; a profiler hiccup must not cost a row
        row["attention"] = attention_kernel(trainer)
    del trainer, model
    if cuda:
        torch.cuda.empty_cache()
    return row


def header() -> dict:
    import transformers

    return {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.machine()}, "
            f"{torch.get_num_threads()} threads)", "torch": torch.__version__, "transformers": transformers.__version__,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def table(rows: list[dict]) -> str:
    lines = ["| model | configuration | batch | tokens/s | MFU | vs plain Trainer | peak GiB | attention |",
             "|---|---|---|---|---|---|---|---|"]
    baseline = {}
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | {row['variant']} | {row['batch']} | {row['error']} | | | | |")
            continue
        rate = row["tokens_per_second"] or 0
        baseline.setdefault(row["model"], rate if row["variant"] == "plain Trainer" else None)
        base = baseline[row["model"]]
        speedup = f"{rate / base:.2f}x" if base else "-"
        mfu = f"{100 * row['mfu']:.1f}%" if row.get("mfu") else "-"
        memory = row["peak_memory_gib"] if row["peak_memory_gib"] is not None else "-"
        lines.append(f"| {row['model']} | {row['variant']} | {row['batch']} | {rate:,.0f} | {mfu} | {speedup} | "
                     f"{memory} | {row.get('attention', '-')} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="Tiny models and few steps: check the script on a CPU.")
    parser.add_argument("--models", nargs="*", help="Only these model rows (names as printed).")
    parser.add_argument("--output", help="Write the rows and the device header here as JSON.")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warmup, timed = (3, 4) if args.tiny else (WARMUP_STEPS, TIMED_STEPS)
    info = header()
    print(json.dumps(info), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for spec in model_specs(args.tiny):
            if args.models and spec["name"] not in args.models:
                continue
            for variant in VARIANTS:
                started = time.time()
                row = measure(spec, variant, scratch, warmup, timed)
                row["wall_s"] = round(time.time() - started, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(table(rows))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump({**info, "rows": rows}, f, indent=1)
    failed = [r for r in rows if "error" in r and r["variant"] != "+ batch"]
    sys.exit(1 if failed or not rows or any(not math.isfinite(r.get("tokens_per_second") or 0) for r in rows) else 0)


if __name__ == "__main__":
    main()
