"""GLUE fine-tuning: tokenization, length order, the model and its Trainer, predictions in file order.

The task table and the metrics are in lmzoo.glue_tasks, the data readers in lmzoo.glue_data, the leaderboard
files in lmzoo.glue_predictions (all three light to import: the sweep checks its data without torch).

Metric keys (fractions, not percents), as written to all_results.json and the results record:

* dev set: `eval_<metric>` for each of the task's metrics, plus `eval_combined_score` (their mean) and
  `eval_loss`. Metrics: cola `matthews_correlation`; sst2, mnli, qnli, rte, wnli `accuracy`; mrpc, qqp `f1` and
  `accuracy`; stsb `pearson` and `spearmanr`.
* MNLI: `eval_*` is the matched dev set, `eval_mm_*` the mismatched one; the record's `combined_score` is the
  mean of the two (GLUE's MNLI average). For every other task it is `eval_combined_score`.
"""

import logging

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch.utils.data import SequentialSampler
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    default_data_collator,
)

from .callbacks import DivergenceGuard
from .checkpoints import check_model_folder
from .errors import UsageError
from .glue_predictions import write_predictions
from .glue_tasks import GlueTask, logits_to_predictions, metrics_function
from .logs import new_weights_note
from .model_source import resolve_checkpoint
from .presets import max_positions
from .sampling import ShuffledLengthGroupedSampler
from .trainer import GuardedTrainer

logger = logging.getLogger("run_glue")  # run_glue.py's log


def mean_loss(task: GlueTask, logits, label_ids) -> float:
    """The loss the model trains on, averaged over examples: cross-entropy, or squared error for STS-B."""
    logits = torch.as_tensor(np.asarray(logits[0] if isinstance(logits, tuple) else logits), dtype=torch.float64)
    labels = torch.as_tensor(np.asarray(label_ids))
    if task.is_regression:
        return float(F.mse_loss(logits.reshape(-1), labels.double().reshape(-1)))
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.long().reshape(-1)))


# ----------------------------------------------------------------------------------------------------------------
# Tokenizing, length order, and the model


def encode(dataset, tokenizer, max_seq_length: int, pad_to_max_length: bool):
    """Tokenize the common columns; keep `label` and add `length` (tokens before padding)."""
    pair = "text_pair" in dataset.column_names

    def tokenize(batch):
        encoded = tokenizer(batch["text"], batch["text_pair"] if pair else None, truncation=True,
                            max_length=max_seq_length, padding="max_length" if pad_to_max_length else False)
        encoded["length"] = [sum(mask) for mask in encoded["attention_mask"]]
        return encoded

    drop = [name for name in dataset.column_names if name != "label"]
    return dataset.map(tokenize, batched=True, remove_columns=drop, desc="Tokenizing")


def length_order(lengths) -> np.ndarray:
    """Positions sorted longest first (so memory runs out at once if it will), ties in file order."""
    return np.argsort(-np.asarray(lengths), kind="stable")


def restore_order(values, order: np.ndarray):
    """Undo `dataset.select(order)` on per-example outputs."""
    if values is None:
        return None
    values = values[0] if isinstance(values, tuple) else values  # some models return extra outputs
    restored = np.empty_like(values)
    restored[order] = values
    return restored


def predict_in_file_order(trainer, encoded_split, metric_key_prefix: str):
    """Predict a split in length order (little padding per batch); return (logits, label ids, metrics) in file order."""
    order = length_order(encoded_split["length"])
    output = trainer.predict(encoded_split.select(order), metric_key_prefix=metric_key_prefix)
    return restore_order(output.predictions, order), restore_order(output.label_ids, order), output.metrics


def predict_to_file(trainer, task: GlueTask, encoded_split, indices, path: str, metric_key_prefix: str) -> dict:
    """Predict a split and write its predictions file; return its metrics (GLUE metrics where it has labels)."""
    logits, label_ids, metrics = predict_in_file_order(trainer, encoded_split, metric_key_prefix)
    if not len(logits) == len(encoded_split) == len(indices):  # never a padded or a short predictions file
        raise RuntimeError(f"{path}: {len(logits)} predictions for {len(encoded_split)} examples")
    if trainer.is_world_process_zero():  # every rank predicts (the gather needs them all); one writes
        write_predictions(path, task, indices, logits_to_predictions(task, logits), label_ids)
    return {**metrics, f"{metric_key_prefix}_samples": len(logits)}


def resolve_model_path(name: str) -> str:
    """A checkpoint folder, the alias `minilm`, or a Hub name (lmzoo.model_source)."""
    return resolve_checkpoint(name, "--model_name_or_path")


def usable_max_seq_length(requested: int, tokenizer, config) -> int:
    limits = [requested, tokenizer.model_max_length, max_positions(config) or requested]
    return int(min(limit for limit in limits if limit and limit > 0))


def load_tokenizer_and_model(model_path: str, task: GlueTask, tokenizer_name: str | None = None,
                             ignore_mismatched_sizes: bool = False):
    """Tokenizer and a sequence-classification model with the task's head (new, or the checkpoint's)."""
    check_model_folder(model_path, "--model_name_or_path")
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name or model_path)
        config = AutoConfig.from_pretrained(model_path, num_labels=task.num_labels, finetuning_task=task.name)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot load {tokenizer_name or model_path}: {' '.join(str(err).split())}") from err
    config.problem_type = "regression" if task.is_regression else "single_label_classification"
    if not task.is_regression:
        config.id2label = dict(enumerate(task.labels))
        config.label2id = {label: i for i, label in enumerate(task.labels)}
    if tokenizer.pad_token is None:  # GPT-2 and our own causal LMs have no padding token: pad with end-of-text
        tokenizer.pad_token = tokenizer.eos_token
    if config.pad_token_id is None:  # the classifier finds each sequence's last token by this id
        config.pad_token_id = tokenizer.pad_token_id
    try:
        model, loading_info = AutoModelForSequenceClassification.from_pretrained(
            model_path, config=config, ignore_mismatched_sizes=ignore_mismatched_sizes, output_loading_info=True)
    except SafetensorError as err:
        raise UsageError(f"cannot load {model_path}: its weights file is damaged or cut short "
                         f"({' '.join(str(err).split())})") from err
    except (OSError, ValueError, RuntimeError) as err:
        raise UsageError(f"cannot load {model_path} for sequence classification: "
                         f"{' '.join(str(err).split())}") from err
    note = new_weights_note(loading_info, within=f"{model.base_model_prefix}.")
    if note:  # the classification head is new by design; new weights in the body are worth a warning
        logger.warning("%s: %s", model_path, note)
    return tokenizer, model


class GlueTrainer(GuardedTrainer):
    """Trainer with length-grouped training batches in shuffled order (lmzoo.sampling) from precomputed lengths,
    evaluation in dataset order, and every step's loss shown to the divergence guard.

    transformers 5 drops the `length` column before building the sampler (then measures every example again)
    and also length-groups evaluation, in a shuffled order; we sort eval sets ourselves
    (`predict_in_file_order`) so that predictions map back to rows. (Checked against transformers 5.24.)
    """

    def __init__(self, *args, train_lengths=None, task: GlueTask | None = None, sampling_strategy: str | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.train_lengths = train_lengths
        # run_glue.py's choice (grouped by default), without changing the parsed arguments
        self.sampling_strategy = sampling_strategy or self.args.train_sampling_strategy
        self.task = task
        self.loss_is_a_batch_mean()  # *ForSequenceClassification: a mean over the batch

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        """The Trainer's loop; its loss is then recomputed from the gathered per-example outputs. The Trainer
        averages batch means, and under torchrun the last batches hold examples repeated to even out the ranks,
        whose losses enter those means (transformers 5.24): eval_loss was off by 1e-4 on 2 processes."""
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                         metric_key_prefix)
        key = f"{metric_key_prefix}_loss"
        if self.task is not None and key in output.metrics and output.predictions is not None \
                and output.label_ids is not None:
            output.metrics[key] = mean_loss(self.task, output.predictions, output.label_ids)
        return output

    def _get_train_sampler(self, train_dataset=None):
        if self.sampling_strategy == "group_by_length" and self.train_lengths is not None:
            # one group per micro-step of all ranks: accelerate deals its consecutive batches out to the ranks
            batch = self.args.per_device_train_batch_size * max(1, self.args.world_size)
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return ShuffledLengthGroupedSampler(self.train_lengths, batch, seed=seed)
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None


def build_trainer(model, training_args, tokenizer, task: GlueTask, train_dataset=None, eval_dataset=None,
                  pad_to_max_length: bool = False, guard: DivergenceGuard | None = None,
                  sampling_strategy: str | None = None):
    """The Trainer: dynamic padding (unless padded to max length already), GLUE metrics, length-sorted dev set."""
    if pad_to_max_length:
        collator = default_data_collator
    else:  # multiples of 8 use tensor cores under mixed precision
        multiple = 8 if (training_args.fp16 or training_args.bf16) else None
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)
    if eval_dataset is not None:  # evaluation during training only yields metrics: row order does not matter
        eval_dataset = eval_dataset.select(length_order(eval_dataset["length"]))
    return GlueTrainer(
        model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
        processing_class=tokenizer, data_collator=collator, compute_metrics=metrics_function(task),
        train_lengths=train_dataset["length"] if train_dataset is not None else None, task=task,
        sampling_strategy=sampling_strategy,
        callbacks=[guard] if guard is not None else None,
    )


