#!/usr/bin/env python
"""Causal-LM pretraining (GPT-2) from scratch or from a checkpoint.

    python run_clm.py --config_name gpt2 --train_file webtext.train.jsonl --validation_file webtext.valid.jsonl \
        --output_dir outputs/gpt2 --do_train --do_eval --block_size 1024 --max_steps 100000

Leaves in --output_dir a checkpoint that AutoModelForCausalLM / AutoTokenizer load, all_results.json and
lmzoo_record.json. `--eval_stride` adds the sliding-window perplexity over the whole validation text;
`--sample_prompt` prints (and records) a sampled continuation.
"""

from dataclasses import dataclass, field

from lmzoo.args import DataArguments, PretrainingArguments, ModelArguments, parse_args
from lmzoo.collators import CausalLmCollator
from lmzoo.corpus import load_raw_corpus
from lmzoo.data import causal_layout, load_tokenized
from lmzoo.errors import UsageError, require, run_main
from lmzoo.generation import joined_token_ids, sample_continuations, strided_perplexity
from lmzoo.plan import build_model, plan_model
from lmzoo.pretrain import (block_length, build_config, check_model_type, finish_run,
                            start_run)

CLM_MODEL_TYPES = ("gpt2", "gpt_neo", "gpt_neox", "llama", "mistral", "qwen2", "opt")


@dataclass
class ClmArguments:
    block_size: int | None = field(default=None, metadata={
        "help": "Tokens per training block (default: min(1024, the model's positions)). Same as --max_seq_length."})
    eval_stride: int | None = field(default=None, metadata={
        "help": "Also compute the strided sliding-window perplexity over the whole validation text, with this stride."})
    sample_prompt: list[str] = field(default_factory=list, metadata={
        "help": "Print a sampled continuation of this prompt at the end (may be repeated)."})
    sample_max_new_tokens: int = field(default=40, metadata={"help": "Length of each sampled continuation."})


def check_eval_stride(stride: int | None, block: int, do_eval: bool) -> None:
    """Before any data work: a bad stride would otherwise fail (or be ignored) after the whole training run."""
    if stride is None:
        return
    require(do_eval, "--eval_stride scores the validation text after training: it needs --do_eval")
    require(0 < stride <= block, f"--eval_stride must be between 1 and the block size ({block}), got {stride}")


@run_main
def main():
    model_args, data_args, clm_args, training_args = parse_args(
        ModelArguments, DataArguments, ClmArguments, PretrainingArguments)
    if clm_args.block_size and data_args.max_seq_length and clm_args.block_size != data_args.max_seq_length:
        raise UsageError("--block_size and --max_seq_length disagree; give one")
    run = start_run(training_args, data_args)

    config = build_config(model_args, run)
    check_model_type(config, CLM_MODEL_TYPES, "run_clm.py")
    block = block_length(clm_args.block_size or data_args.max_seq_length, 1024, config, "--block_size")
    check_eval_stride(clm_args.eval_stride, block, training_args.do_eval)
    raw = load_raw_corpus(data_args, run.hub_cache)
    plan = plan_model(model_args, config, raw, run, block=block)
    tokenizer = plan.tokenizer
    data = load_tokenized(data_args, run.cache_root, raw, tokenizer, causal_layout(tokenizer, block), "clm")
    if data_args.prepare_only:
        return  # the tokenizer and the blocks are cached: train with the same flags (--require_cache)
    # The model and Trainer code load here, after the arguments are checked: --help and flag errors answer at once.
    from transformers import AutoModelForCausalLM

    from lmzoo.objectives import CausalLmObjective
    from lmzoo.trainer import LmTrainer

    model = build_model(plan, AutoModelForCausalLM)

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = LmTrainer(
        model=model,
        args=training_args,
        train_dataset=data["train"] if training_args.do_train else None,
        eval_dataset=data["validation"] if training_args.do_eval else None,
        data_collator=CausalLmCollator(pad_id),
        processing_class=tokenizer,
        objective=CausalLmObjective(),
        callbacks=run.callbacks(model, block),
    )
    extra = {"objective": "causal LM"}

    def after_training(record):  # on the trained weights, main process only
        if clm_args.eval_stride is not None:  # the validation documents joined by blank lines, streamed
            texts = (text for batch in raw["validation"].iter(batch_size=1000) for text in batch["text"])
            record["strided"] = strided_perplexity(trainer.model, joined_token_ids(texts, tokenizer), block,
                                                   clm_args.eval_stride, training_args.per_device_eval_batch_size)
            record["strided"]["perplexity_kind"] = ("sliding-window perplexity over the whole validation text "
                                                    f"(window {block}, stride {clm_args.eval_stride})")
        if clm_args.sample_prompt:
            record["samples"] = sample_continuations(trainer.model, tokenizer, clm_args.sample_prompt,
                                                     clm_args.sample_max_new_tokens, training_args.seed)

    finish_run(trainer, run, plan, script="run_clm.py", model_args=model_args, data_args=data_args,
               extra_record=extra, after_training=after_training, test_dataset=data.get("test"))


if __name__ == "__main__":
    main()
