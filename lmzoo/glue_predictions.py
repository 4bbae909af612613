"""GLUE prediction files: the leaderboard's `index<TAB>prediction` TSVs, written and checked. No torch import."""

import math
import os

from .errors import require
from .glue_tasks import STSB_RANGE, SUBMISSION_HEADER, GlueTask, get_task
from .records import atomic_write_text


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
