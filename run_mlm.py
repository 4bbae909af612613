#!/usr/bin/env python
"""Masked-LM pretraining (BERT, RoBERTa, DistilBERT) from scratch or from a checkpoint; MLM only, no NSP.

    python run_mlm.py --config_name bert-mini --train_file wiki.train.raw --validation_file wiki.valid.raw \
        --output_dir outputs/bert-mini --do_train --do_eval --max_steps 10000

Leaves in --output_dir a checkpoint that AutoModelForMaskedLM / AutoTokenizer load, all_results.json and
lmzoo_record.json (the zoo tables' input).

With --teacher_name_or_path DIR the model is a student distilled from that masked-LM checkpoint, DistilBERT's
way (lmzoo.distill): --alpha_ce x soft-target KL + --alpha_mlm x masked-LM loss + --alpha_cos x hidden-state
cosine loss, at --temperature; --init_student_from_teacher starts it from every other teacher layer.

    python run_mlm.py --teacher_name_or_path outputs/bert-mini --config_name bert-mini \
        --config_overrides num_hidden_layers=2 --init_student_from_teacher --train_file wiki.train.raw ...
"""

from dataclasses import dataclass, field

from lmzoo.args import DataArguments, DistillationArguments, PretrainingArguments, ModelArguments, parse_args
from lmzoo.flops import precision_of
from lmzoo.collators import MlmCollator
from lmzoo.corpus import load_raw_corpus
from lmzoo.data import load_tokenized, mlm_layout
from lmzoo.errors import require, run_main
from lmzoo.plan import build_model, plan_model
from lmzoo.pretrain import block_length, build_config, check_model_type, finish_run, start_run

MLM_MODEL_TYPES = ("bert", "roberta", "distilbert", "xlm-roberta", "camembert", "electra")


@dataclass
class MlmArguments:
    mlm_probability: float = field(default=0.15, metadata={"help": "Fraction of tokens to mask (80/10/10 replacement)."})
    whole_word_mask: bool = field(default=False, metadata={"help": "Mask whole words, not single word pieces."})
    sparse_mlm_head: bool = field(default=True, metadata={
        "help": "Run the prediction head on masked positions only (same loss, much faster); False for the dense head."})


@run_main
def main():
    model_args, data_args, mlm_args, distill_args, training_args = parse_args(
        ModelArguments, DataArguments, MlmArguments, DistillationArguments, PretrainingArguments)
    require(0 < mlm_args.mlm_probability < 1, f"--mlm_probability must be in (0, 1), got {mlm_args.mlm_probability}")
    run = start_run(training_args, data_args)
    # The model and Trainer code load here, after the arguments are checked: --help and flag errors answer at once.
    from transformers import AutoModelForMaskedLM

    from lmzoo.distill import (DistillationObjective, check_student_fits_teacher, init_student_from_teacher,
                               prepare_teacher, student_plan_options, teacher_forward_flops)
    from lmzoo.objectives import MaskedLmObjective
    from lmzoo.trainer import LmTrainer

    teacher = None
    if distill_args.teacher_name_or_path:
        teacher = prepare_teacher(distill_args, model_args, run.hub_cache)

    config = build_config(model_args, run)
    check_model_type(config, MLM_MODEL_TYPES, "run_mlm.py")
    block = block_length(data_args.max_seq_length, 128, config, "--max_seq_length")
    raw = load_raw_corpus(data_args, run.hub_cache)
    # a student takes its teacher's tokenizer and vocabulary size unless told otherwise
    plan = plan_model(model_args, config, raw, run, block=block,
                      **(student_plan_options(teacher, model_args) if teacher is not None else {}))
    tokenizer = plan.tokenizer
    if teacher is not None:
        check_student_fits_teacher(teacher, plan)  # before any long work
    data = load_tokenized(data_args, run.cache_root, raw, tokenizer, mlm_layout(tokenizer, block), "mlm")
    if data_args.prepare_only:
        return  # the tokenizer and the blocks are cached: train with the same flags (--require_cache)
    model = build_model(plan, AutoModelForMaskedLM)
    if distill_args.init_student_from_teacher:
        init_student_from_teacher(model, teacher.model)

    masking = {"whole_word_mask": mlm_args.whole_word_mask, "sparse_positions": mlm_args.sparse_mlm_head}
    collator = MlmCollator(tokenizer, mlm_args.mlm_probability, **masking)
    eval_collator = MlmCollator(tokenizer, mlm_args.mlm_probability, seed=training_args.seed + 1,
                                per_example_masks=True, **masking)
    head_fraction = mlm_args.mlm_probability if mlm_args.sparse_mlm_head else 1.0
    callbacks = run.callbacks(model, block, head_fraction=head_fraction)
    record = {"objective": "masked LM", "mlm_probability": mlm_args.mlm_probability,
              "whole_word_mask": mlm_args.whole_word_mask, "sparse_mlm_head": mlm_args.sparse_mlm_head}
    if teacher is None:
        objective = MaskedLmObjective(model, sparse_head=mlm_args.sparse_mlm_head)
    else:
        objective = DistillationObjective(model, teacher.model, distill_args, sparse_head=mlm_args.sparse_mlm_head,
                                          precision=precision_of(training_args))
        callbacks.append(objective.terms_log)  # loss_ce, loss_mlm, loss_cos in the training logs
        run.throughput.flops_per_token += teacher_forward_flops(teacher.model, block, mlm_args.mlm_probability)
        record.update(objective="distillation (masked LM)", **objective.record())
    trainer = LmTrainer(
        model=model,
        args=training_args,
        train_dataset=data["train"] if training_args.do_train else None,
        eval_dataset=data["validation"] if training_args.do_eval else None,
        data_collator=collator,
        eval_collator=eval_collator,
        processing_class=tokenizer,
        objective=objective,
        callbacks=callbacks,
    )
    finish_run(trainer, run, plan, script="run_mlm.py", model_args=model_args, data_args=data_args,
               extra_record=record,
               test_dataset=data.get("test"))


if __name__ == "__main__":
    main()
