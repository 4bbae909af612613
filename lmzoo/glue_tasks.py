"""The GLUE task table and GLUE's metrics, with no torch or transformers import.

The sweep's and the zoo's checks, and every script's --help, read the table from here in milliseconds;
lmzoo.glue (readers, tokenization, the Trainer) builds on it. Adding a task is one row in `TASKS`. Metric keys are
described in lmzoo.glue.
"""

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .errors import UsageError, require

GLUE_DIR_ENV = "LMZOO_GLUE_DIR"
HUB_DATASET = "nyu-mll/glue"
STSB_RANGE = (0.0, 5.0)
SUBMISSION_HEADER = ["index", "prediction"]


class Split(NamedTuple):
    """One evaluation or test file of a task.

    key: for a dev split, the metric prefix ("eval", "eval_mm"); for a test split, the leaderboard file name
    without ".tsv" ("RTE", "MNLI-m").
    """

    key: str
    file: str
    hub_split: str


@dataclass(frozen=True)
class GlueTask:
    name: str  # what --task_name takes
    folder: str  # the folder in the GLUE layout
    text_columns: tuple[str, ...]  # header names in the GLUE TSVs: one sentence or a pair
    label_column: str
    # Label names as written in the TSVs and the leaderboard files, in the Hub's id order; None: regression.
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    hub_config: str
    hub_text_columns: tuple[str, ...]
    dev_splits: tuple[Split, ...] = (Split("eval", "dev.tsv", "validation"),)
    test_splits: tuple[Split, ...] = ()
    index_column: str = "index"
    # Files without a header (CoLA train/dev): column name -> field position.
    headerless_layout: dict[str, int] = field(default_factory=dict)
    predicts_diagnostic: bool = False  # the GLUE diagnostic set (AX) is scored with this task's model
    # The best dev score a constant prediction gets (the majority class; 0 for a correlation): what a model that
    # learned nothing scores, the floor of the zoo's colour scales. From the official dev files' labels (the
    # local ones are checked in tests/test_zoo.py; MNLI and QQP from their published label counts).
    constant_score: float = 0.0

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.labels)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2


def _test(name: str) -> tuple[Split, ...]:
    return (Split(name, "test.tsv", "test"),)


BINARY = ("0", "1")
NLI_2 = ("entailment", "not_entailment")

TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask("cola", "CoLA", ("sentence",), "label", BINARY, ("matthews_correlation",), "cola", ("sentence",),
                 test_splits=_test("CoLA"), headerless_layout={"label": 1, "sentence": 3}),
        GlueTask("sst2", "SST-2", ("sentence",), "label", BINARY, ("accuracy",), "sst2", ("sentence",),
                 test_splits=_test("SST-2"), constant_score=0.5092),
        GlueTask("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", BINARY, ("f1", "accuracy"), "mrpc",
                 ("sentence1", "sentence2"), test_splits=_test("MRPC"), constant_score=0.7480),
        GlueTask("qqp", "QQP", ("question1", "question2"), "is_duplicate", BINARY, ("f1", "accuracy"), "qqp",
                 ("question1", "question2"), test_splits=_test("QQP"), index_column="id", constant_score=0.4532),
        GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), "score", None, ("pearson", "spearmanr"), "stsb",
                 ("sentence1", "sentence2"), test_splits=_test("STS-B")),
        GlueTask("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label", ("entailment", "neutral", "contradiction"),
                 ("accuracy",), "mnli", ("premise", "hypothesis"),
                 dev_splits=(Split("eval", "dev_matched.tsv", "validation_matched"),
                             Split("eval_mm", "dev_mismatched.tsv", "validation_mismatched")),
                 test_splits=(Split("MNLI-m", "test_matched.tsv", "test_matched"),
                              Split("MNLI-mm", "test_mismatched.tsv", "test_mismatched")),
                 predicts_diagnostic=True, constant_score=0.3533),
        GlueTask("qnli", "QNLI", ("question", "sentence"), "label", NLI_2, ("accuracy",), "qnli",
                 ("question", "sentence"), test_splits=_test("QNLI"), constant_score=0.5054),
        GlueTask("rte", "RTE", ("sentence1", "sentence2"), "label", NLI_2, ("accuracy",), "rte",
                 ("sentence1", "sentence2"), test_splits=_test("RTE"), constant_score=0.5271),
        GlueTask("wnli", "WNLI", ("sentence1", "sentence2"), "label", BINARY, ("accuracy",), "wnli",
                 ("sentence1", "sentence2"), test_splits=_test("WNLI"), constant_score=0.5634),
    )
}

# The diagnostic set: premise/hypothesis pairs without public labels, predicted with an MNLI model.
DIAGNOSTIC = Split("AX", "diagnostic.tsv", "test")
DIAGNOSTIC_PATHS = (("diagnostic", "diagnostic.tsv"), ("AX", "AX.tsv"), ("AX", "diagnostic.tsv"))
DIAGNOSTIC_HUB_CONFIG = "ax"


def normalized_name(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def get_task(name: str | None) -> GlueTask:
    """The task for a --task_name, spelled as GLUE or the Hub does (sst2, SST-2, sts-b...)."""
    valid = ", ".join(TASKS)
    require(bool(name), f"--task_name is required; valid tasks: {valid}")
    for task in TASKS.values():
        if normalized_name(name) in (task.name, normalized_name(task.folder)):
            return task
    raise UsageError(f"unknown task '{name}'; valid tasks: {valid}")


# ----------------------------------------------------------------------------------------------------------------
# Metrics


UNDEFINED_CORRELATION = ("undefined: every prediction (or every label) is the same value, and a correlation with a "
                         "constant does not exist")


def _correlation(function, predictions, references) -> float:
    # A constant has no correlation: NaN, as scipy and GLUE's own metric give (with a warning), published as
    # undefined, never as a score. (Matthews correlation stays 0 for a constant classifier: GLUE's convention.)
    if np.ptp(predictions) == 0 or np.ptp(references) == 0:
        return math.nan
    return float(function(predictions, references)[0])


def _f1(predictions, references) -> float:
    from sklearn.metrics import f1_score  # imported when scored: sklearn and scipy take most of a second to load

    return float(f1_score(references, predictions))  # the positive class is label 1 (paraphrase, duplicate)


def _matthews(predictions, references) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(references, predictions))


def _pearson(predictions, references) -> float:
    from scipy.stats import pearsonr

    return _correlation(pearsonr, predictions, references)


def _spearman(predictions, references) -> float:
    from scipy.stats import spearmanr

    return _correlation(spearmanr, predictions, references)


METRIC_FUNCTIONS = {
    "accuracy": lambda pred, ref: float(np.mean(pred == ref)),
    "f1": _f1,
    "matthews_correlation": _matthews,
    "pearson": _pearson,
    "spearmanr": _spearman,
}


def glue_metrics(task: GlueTask, predictions, references) -> dict[str, float]:
    """The task's GLUE metrics plus `combined_score`, their mean. Predictions are label ids (or scores for STS-B).
    An undefined metric is NaN, and so is the combined score then."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    scores = {name: METRIC_FUNCTIONS[name](predictions, references) for name in task.metrics}
    scores["combined_score"] = float(np.mean(list(scores.values())))
    return scores


def undefined_metrics(task: GlueTask, metrics: dict) -> dict[str, str]:
    """metric key -> why it has no value, for the dev metrics of `metrics` that are NaN."""
    undefined = {}
    for split in task.dev_splits:
        for name in (*task.metrics, "combined_score"):
            value = metrics.get(f"{split.key}_{name}")
            if isinstance(value, float) and math.isnan(value):
                undefined[f"{split.key}_{name}"] = (UNDEFINED_CORRELATION if name in ("pearson", "spearmanr")
                                                    else "undefined: the mean of metrics that include an undefined one")
    return undefined


def logits_to_predictions(task: GlueTask, logits) -> np.ndarray:
    logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits)  # some models return extra outputs
    return logits.reshape(-1) if task.is_regression else logits.argmax(axis=-1)


def metrics_function(task: GlueTask):
    """A `compute_metrics` for the Trainer."""

    def compute_metrics(eval_prediction) -> dict[str, float]:
        return glue_metrics(task, logits_to_predictions(task, eval_prediction.predictions), eval_prediction.label_ids)

    return compute_metrics


def combined_score(task: GlueTask, metrics: dict) -> float | None:
    """The task's single number: the dev combined score, for MNLI averaged over matched and mismatched; None when
    there is none or when it is undefined."""
    scores = [metrics[f"{split.key}_combined_score"] for split in task.dev_splits
              if f"{split.key}_combined_score" in metrics]
    if not scores or not all(math.isfinite(score) for score in scores):
        return None
    return float(np.mean(scores))
