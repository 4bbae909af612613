"""A GLUE leaderboard file checker for the tests: header, row count, index order, labels or 3-decimal scores."""

import math
import os

from lmzoo.errors import require
from lmzoo.glue_tasks import STSB_RANGE, SUBMISSION_HEADER, GlueTask, get_task


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
