"""The model zoo's data: results records read and upgraded, GLUE runs grouped into grid cells (a model, a task,
a batch size x learning rate x epochs point; its seeds), and the best cell per model and task.

No plotting and no markdown here (lmzoo.zoo_figures, lmzoo.zoo), and no torch: the zoo loads in milliseconds.
"""

import math
import os
import re
import statistics
import sys
from dataclasses import dataclass, field

from .errors import require
from .records import GLUE_GRID_FIELDS, RECORD_NAME, RecordError, load_record

# The reference table's column order (WNLI before RTE), not GLUE's task order.
GLUE_TABLE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "wnli", "rte")
METRIC_LABELS = {"matthews_correlation": "MCC", "accuracy": "acc", "f1": "F1", "pearson": "Pearson",
                 "spearmanr": "Spearman"}
SPLIT_LABELS = {"eval": "m", "eval_mm": "mm"}  # MNLI's matched and mismatched dev sets
DASH = "-"
UNDEFINED = "undefined"


# ----------------------------------------------------------------------------------------------------------------
# Reading records


def find_records(roots: list[str]) -> list[dict]:
    """Every pretrain/glue record under `roots` (recursively), read through lmzoo.records (older schema versions
    upgraded), each with its file in `_path`; one per file. A record that cannot be read is skipped with a line
    naming the file and what is wrong with it."""
    records, seen = [], set()
    for root in roots:
        require(os.path.isdir(root), f"--results {root} is not a folder")
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith(".tmp-"))
            path = os.path.realpath(os.path.join(folder, RECORD_NAME))
            if RECORD_NAME not in files or path in seen:
                continue
            seen.add(path)
            try:
                record = load_record(path)
            except RecordError as err:  # a damaged or foreign record must not hide the others
                print(f"zoo: skipping {err}", file=sys.stderr)
                continue
            records.append({**record, "_path": path})
    return records


def record_status(record: dict) -> str:
    """completed / failed / diverged (lmzoo.records.STATUSES)."""
    return record["status"]


def nothing_evaluated(record: dict) -> bool:
    """A pretraining record whose evaluation scored no token: its loss means nothing (v1 wrote 0, perplexity 1)."""
    return record.get("kind") == "pretrain" and record.get("eval_tokens") == 0


def is_undefined(record: dict) -> bool:
    """A completed GLUE run whose score does not exist (a correlation of constant predictions)."""
    return (record.get("kind") == "glue" and record_status(record) == "completed"
            and record.get("combined_score") is None and bool(record.get("undefined_metrics")))


def is_usable(record: dict) -> bool:
    """A result that may be selected: completed, with a finite score over something evaluated."""
    score = record.get("combined_score") if record.get("kind") == "glue" else record.get("eval_loss")
    return (record_status(record) == "completed" and score is not None and math.isfinite(score)
            and not nothing_evaluated(record))


def model_label(model: str) -> str:
    """The name a model goes by in tables and folders: a checkpoint folder's name, an alias or Hub name as given."""
    if os.path.isabs(model) or os.path.isdir(model) or model.startswith("."):
        return os.path.basename(os.path.normpath(model))
    return model


def glue_model_name(record: dict) -> str:
    """The table row of a GLUE run: the name its sweep gave it, else the label of the model it fine-tuned."""
    return (record.get("sweep") or {}).get("name") or model_label(record["model"])


def file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name)


def format_lr(value) -> str:
    """A learning rate the way people write it: 5e-5, 1e-4, 1.5e-4."""
    mantissa, exponent = f"{float(value):e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def format_number(value) -> str:
    return f"{float(value):g}"


# ----------------------------------------------------------------------------------------------------------------
# GLUE: the grid, and the best point per model and task


@dataclass
class GridCell:
    """One grid point of one model on one task; its seeds' runs."""

    model: str
    task: str
    batch_size: int  # the effective batch: examples per optimizer step
    learning_rate: float
    epochs: float
    runs: list = field(default_factory=list)

    @property
    def usable_runs(self) -> list:
        return [r for r in self.runs if is_usable(r)]

    @property
    def status(self) -> str:
        if self.usable_runs:
            return "completed"
        if any(is_undefined(r) for r in self.runs):
            return UNDEFINED
        statuses = {record_status(r) for r in self.runs}
        return "diverged" if "diverged" in statuses or "completed" in statuses else "failed"

    @property
    def score(self) -> float | None:
        """The mean dev score over the completed seeds; None when none completed."""
        runs = self.usable_runs
        return sum(r["combined_score"] for r in runs) / len(runs) if runs else None

    @property
    def spread(self) -> float | None:
        """The standard deviation of the dev score over the completed seeds (n - 1); None with fewer than two."""
        runs = self.usable_runs
        return statistics.stdev(r["combined_score"] for r in runs) if len(runs) > 1 else None

    def metric(self, key: str) -> float | None:
        values = [r.get("dev_metrics", {}).get(key) for r in self.usable_runs]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None


def within_seed_spread(cell: GridCell, best: GridCell) -> bool:
    """Whether `cell` cannot be told apart from the best cell: its score is within the larger of the two seed
    spreads. False when neither cell has several seeds (the spread is then unknown, so nothing is claimed)."""
    spreads = [c.spread for c in (cell, best) if c.spread is not None]
    return (cell is not best and cell.score is not None and best.score is not None and bool(spreads)
            and best.score - cell.score <= max(spreads))


def grid_key(record: dict) -> tuple:
    """(model, task, effective batch size, learning rate, epochs): lmzoo.records.GLUE_GRID_FIELDS after the name."""
    task, batch_size, learning_rate, epochs = (record[name] for name in GLUE_GRID_FIELDS)
    return glue_model_name(record), task, int(batch_size), float(learning_rate), float(epochs)


def dedupe_runs(records: list[dict]) -> list[dict]:
    """One record per (model, task, grid point, seed): the newest, when --results folders overlap or repeat a run."""
    newest = {}
    for record in sorted(records, key=lambda r: r.get("finished_at", "")):
        newest[(*grid_key(record), record.get("seed"))] = record
    return list(newest.values())


def glue_grid(records: list[dict]) -> dict[tuple, GridCell]:
    """Grid cells keyed (model, task, effective batch size, learning_rate, epochs)."""
    cells = {}
    for record in dedupe_runs([r for r in records if r.get("kind") == "glue"]):
        key = grid_key(record)
        cells.setdefault(key, GridCell(*key)).runs.append(record)
    return cells


def best_cells(cells: dict[tuple, GridCell]) -> dict[tuple, GridCell]:
    """(model, task) -> the cell with the best mean dev score; ties go to the first in grid order."""
    best = {}
    for key in sorted(cells):
        cell = cells[key]
        current = best.get((cell.model, cell.task))
        if cell.score is not None and (current is None or cell.score > current.score):
            best[(cell.model, cell.task)] = cell
    return best


def glue_models(cells: dict[tuple, GridCell]) -> list[str]:
    return sorted({cell.model for cell in cells.values()})


def pretrain_runs(records: list[dict]) -> list[dict]:
    """One record per pretrained model (the newest), smallest first."""
    newest = {}
    for record in sorted((r for r in records if r.get("kind") == "pretrain"), key=lambda r: r.get("finished_at", "")):
        newest[record["model"]] = record
    return sorted(newest.values(), key=lambda r: (r.get("parameters") or 0, r["model"]))
