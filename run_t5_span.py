#!/usr/bin/env python
"""T5 span-corruption pretraining in PyTorch (Hugging Face ships it only for Flax).

    python run_t5_span.py --config_name t5-v1_1-small --train_file c4.train.jsonl --output_dir outputs/t5-small \
        --do_train --do_eval --max_seq_length 512 --max_steps 65536

Noise spans (--noise_density 0.15, --mean_noise_span_length 3.0) are replaced by sentinels <extra_id_0>, ... in
the encoder input; the target lists each sentinel and the span it hides. The corpus is cut into the raw length
that corrupts to exactly --max_seq_length input tokens (512 -> 568 raw, 114 target). Leaves a checkpoint that
T5ForConditionalGeneration / AutoTokenizer load, all_results.json and lmzoo_record.json.
"""

import sys
from dataclasses import dataclass, field

from lmzoo.args import DataArguments, ModelArguments, PretrainingArguments, parse_args
from lmzoo.corpus import load_raw_corpus
from lmzoo.data import BlockLayout, load_tokenized
from lmzoo.errors import UsageError, require, run_main
from lmzoo.plan import build_model, plan_model
from lmzoo.pretrain import build_config, check_model_type, finish_run, start_run
from lmzoo.t5_span import DataCollatorForT5SpanCorruption, expand_input_length


@dataclass
class SpanArguments:
    noise_density: float = field(default=0.15, metadata={"help": "Fraction of tokens hidden in noise spans."})
    mean_noise_span_length: float = field(default=3.0, metadata={"help": "Mean length of a noise span."})
    allow_fp16: bool = field(default=False, metadata={
        "help": "Allow --fp16 although T5 is known to overflow in fp16 (activations exceed its range)."})


def check_precision(training_args, span_args) -> None:
    """T5 overflows in fp16: refuse it unless overridden; where auto-precision picked fp16, train in fp32."""
    if not training_args.fp16 or span_args.allow_fp16:
        return
    if training_args.auto_precision == "fp16":
        training_args.fp16 = False
        print("[lmzoo] this GPU has no bf16 and T5 overflows in fp16: training in fp32", file=sys.stderr)
        return
    raise UsageError("--fp16 with T5 overflows (NaN losses); use --bf16 (the default on GPUs that have it) or fp32, "
                     "or pass --allow_fp16 to try anyway")


@run_main
def main():
    model_args, data_args, span_args, training_args = parse_args(
        ModelArguments, DataArguments, SpanArguments, PretrainingArguments)
    check_precision(training_args, span_args)
    require(0 < span_args.noise_density < 1, f"--noise_density must be in (0, 1), got {span_args.noise_density}")
    require(span_args.mean_noise_span_length >= 1,
            f"--mean_noise_span_length must be >= 1, got {span_args.mean_noise_span_length}")
    run = start_run(training_args, data_args)

    config = build_config(model_args, run)
    check_model_type(config, ("t5", "mt5", "umt5"), "run_t5_span.py")
    input_length = data_args.max_seq_length or 512
    require(input_length >= 8, f"--max_seq_length must be at least 8, got {input_length}")
    raw_length, target_length = expand_input_length(input_length, span_args.noise_density,
                                                    span_args.mean_noise_span_length)
    raw = load_raw_corpus(data_args, run.hub_cache)
    plan = plan_model(model_args, config, raw, run, block=input_length)
    tokenizer = plan.tokenizer
    layout = BlockLayout(raw_length, separator_id=tokenizer.eos_token_id)  # raw blocks; the collator adds EOS
    data = load_tokenized(data_args, run.cache_root, raw, tokenizer, layout, "t5span")
    if data_args.prepare_only:
        return  # the tokenizer and the blocks are cached: train with the same flags (--require_cache)
    # The model and Trainer code load here, after the arguments are checked: --help and flag errors answer at once.
    from transformers import AutoModelForSeq2SeqLM

    from lmzoo.objectives import Seq2SeqObjective
    from lmzoo.trainer import LmTrainer

    model = build_model(plan, AutoModelForSeq2SeqLM)

    def collator(seed, per_example_noise=False):
        return DataCollatorForT5SpanCorruption(tokenizer, input_length=input_length, target_length=target_length,
                                               noise_density=span_args.noise_density,
                                               mean_noise_span_length=span_args.mean_noise_span_length, seed=seed,
                                               per_example_noise=per_example_noise)

    trainer = LmTrainer(
        model=model,
        args=training_args,
        train_dataset=data["train"] if training_args.do_train else None,
        eval_dataset=data["validation"] if training_args.do_eval else None,
        data_collator=collator(None),  # torch's global generator: checkpointed, so resuming is exact
        eval_collator=collator(training_args.seed + 1, per_example_noise=True),
        processing_class=tokenizer,
        objective=Seq2SeqObjective(),
        callbacks=run.callbacks(model, input_length, target_length=target_length),
    )
    finish_run(trainer, run, plan, script="run_t5_span.py", model_args=model_args, data_args=data_args,
               extra_record={"objective": "T5 span corruption", "noise_density": span_args.noise_density,
                             "mean_noise_span_length": span_args.mean_noise_span_length, "raw_length": raw_length,
                             "target_length": target_length},
               test_dataset=data.get("test"))


if __name__ == "__main__":
    main()
