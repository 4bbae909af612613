#!/usr/bin/env python
"""Masked-LM pretraining (BERT, RoBERTa, DistilBERT) from scratch or from a checkpoint; MLM only, no NSP.

    python run_mlm.py --config_name bert-mini --train_file wiki.train.raw --validation_file wiki.valid.raw \
        --output_dir outputs/bert-mini --do_train --do_eval --max_steps 10000

Leaves in --output_dir a checkpoint that AutoModelForMaskedLM / AutoTokenizer load, all_results.json and
lmzoo_record.json (the zoo tables' input).
"""

from dataclasses import dataclass, field

from transformers import AutoModelForMaskedLM

from lmzoo.args import DataArguments, PretrainingArguments, ModelArguments, parse_args
from lmzoo.collators import MlmCollator
from lmzoo.data import load_raw_corpus, load_tokenized, mlm_layout
from lmzoo.errors import require, run_main
from lmzoo.pretrain import (block_length, build_config, build_model, build_tokenizer, check_model_type, finish_run,
                            start_run)
from lmzoo.trainer import LmTrainer, MaskedLmObjective

MLM_MODEL_TYPES = ("bert", "roberta", "distilbert", "xlm-roberta", "camembert", "electra")


@dataclass
class MlmArguments:
    mlm_probability: float = field(default=0.15, metadata={"help": "Fraction of tokens to mask (80/10/10 replacement)."})
    whole_word_mask: bool = field(default=False, metadata={"help": "Mask whole words, not single word pieces."})
    sparse_mlm_head: bool = field(default=True, metadata={
        "help": "Run the prediction head on masked positions only (same loss, much faster); False for the dense head."})


@run_main
def main():
    model_args, data_args, mlm_args, training_args = parse_args(
        ModelArguments, DataArguments, MlmArguments, PretrainingArguments)
    require(0 < mlm_args.mlm_probability < 1, f"--mlm_probability must be in (0, 1), got {mlm_args.mlm_probability}")
    run = start_run(training_args, data_args)

    config = build_config(model_args, run)
    check_model_type(config, MLM_MODEL_TYPES, "run_mlm.py")
    block = block_length(data_args.max_seq_length, 128, config, "--max_seq_length")
    raw = load_raw_corpus(data_args, run.hub_cache)
    tokenizer = build_tokenizer(model_args, config, raw, run)
    data = load_tokenized(data_args, run.cache_root, raw, tokenizer, mlm_layout(tokenizer, block), "mlm")
    model = build_model(model_args, config, tokenizer, AutoModelForMaskedLM)

    collator = MlmCollator(tokenizer, mlm_args.mlm_probability, whole_word_mask=mlm_args.whole_word_mask,
                           seed=training_args.seed)
    eval_collator = MlmCollator(tokenizer, mlm_args.mlm_probability, whole_word_mask=mlm_args.whole_word_mask,
                                seed=training_args.seed + 1)
    head_fraction = mlm_args.mlm_probability if mlm_args.sparse_mlm_head else 1.0
    trainer = LmTrainer(
        model=model,
        args=training_args,
        train_dataset=data["train"] if training_args.do_train else None,
        eval_dataset=data["validation"] if training_args.do_eval else None,
        data_collator=collator,
        eval_collator=eval_collator,
        processing_class=tokenizer,
        objective=MaskedLmObjective(model, sparse_head=mlm_args.sparse_mlm_head),
        callbacks=run.callbacks(model, block, causal=False, head_fraction=head_fraction),
    )
    finish_run(trainer, run, script="run_mlm.py", model_args=model_args, data_args=data_args, config=config,
               tokenizer=tokenizer, block=block,
               extra_record={"objective": "masked LM", "mlm_probability": mlm_args.mlm_probability,
                             "whole_word_mask": mlm_args.whole_word_mask, "sparse_mlm_head": mlm_args.sparse_mlm_head})


if __name__ == "__main__":
    main()
