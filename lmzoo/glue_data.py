"""GLUE data from its three sources, read into the same columns and checked in full before any model loads.

Columns: `index`, `text`, `text_pair` for sentence-pair tasks, `label` where known. Sources:

* a folder in the official GLUE layout (`--glue_dir`, or $LMZOO_GLUE_DIR): `<DIR>/<TASK>/train.tsv, dev.tsv,
  test.tsv` (MNLI: `dev_matched.tsv`, `dev_mismatched.tsv`, `test_matched.tsv`, `test_mismatched.tsv`; the
  diagnostic set `<DIR>/diagnostic/diagnostic.tsv` or `<DIR>/AX/AX.tsv`). GLUE files are not quoted: a quote
  character is text, so lines are split on tabs, never parsed as CSV;
* files the user names (csv, tsv, json or jsonl) whose columns are the task's GLUE column names or the Hub's;
* the Hub's `nyu-mll/glue` when online.

A mistake is one `UsageError` naming the file, the line and the culprit. No torch import.
"""

import csv
import json
import math
import os
from dataclasses import dataclass, field

from .errors import UsageError, require
from .glue_tasks import (DIAGNOSTIC, DIAGNOSTIC_HUB_CONFIG, DIAGNOSTIC_PATHS, GLUE_DIR_ENV, HUB_DATASET, STSB_RANGE,
                         GlueTask, normalized_name)


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


def _to_dataset(columns: dict[str, list], task: GlueTask):
    """A `datasets.Dataset` of the columns, typed for the task."""
    import datasets  # here: the file checks need no Arrow

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
    import datasets

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
