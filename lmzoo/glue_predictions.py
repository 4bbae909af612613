"""GLUE prediction files in the leaderboard's `index<TAB>prediction` format. No torch import."""

from .glue_tasks import STSB_RANGE, SUBMISSION_HEADER, GlueTask
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
