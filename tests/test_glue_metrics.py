"""GLUE metrics against values worked out by hand, prediction formatting, and the leaderboard-file check."""

import math

import numpy as np
import pytest
from submission_check import check_submission_file
from hypothesis import given
from hypothesis import strategies as st

from lmzoo import glue, glue_predictions, glue_tasks
from lmzoo.errors import UsageError

TASKS = glue_tasks.TASKS

# A confusion matrix with TP=3, FN=2, FP=1, TN=2 (positive class 1).
REFERENCES = [1, 1, 1, 1, 1, 0, 0, 0]
PREDICTIONS = [1, 1, 1, 0, 0, 1, 0, 0]


def test_matthews_correlation_of_a_confusion_matrix():
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (6 - 2) / sqrt(4*5*3*4)
    scores = glue_tasks.glue_metrics(TASKS["cola"], PREDICTIONS, REFERENCES)
    assert scores["matthews_correlation"] == pytest.approx(4 / math.sqrt(240))
    assert scores["combined_score"] == pytest.approx(4 / math.sqrt(240))


def test_f1_and_accuracy_and_their_mean():
    # precision 3/4, recall 3/5 -> F1 = 2PR / (P + R) = 0.9 / 1.35; accuracy 5/8
    scores = glue_tasks.glue_metrics(TASKS["mrpc"], PREDICTIONS, REFERENCES)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["accuracy"] == pytest.approx(5 / 8)
    assert scores["combined_score"] == pytest.approx((2 / 3 + 5 / 8) / 2)
    assert set(scores) == {"f1", "accuracy", "combined_score"}


@pytest.mark.parametrize("task", ["sst2", "qnli", "rte", "wnli", "mnli"])
def test_accuracy_tasks(task):
    assert glue_tasks.glue_metrics(TASKS[task], [0, 1, 1, 0], [0, 1, 0, 0]) == {"accuracy": 0.75, "combined_score": 0.75}


def test_pearson_and_spearman():
    # x = 1..4, y = 2,5,4,9: deviations (-1.5,-.5,.5,1.5) and (-3,0,-1,4) -> sum xy 10, sum x^2 5, sum y^2 26.
    # ranks of y are 1,3,2,4: sum d^2 = 2 -> rho = 1 - 6*2 / (4*(16-1)) = 0.8
    scores = glue_tasks.glue_metrics(TASKS["stsb"], [1.0, 2.0, 3.0, 4.0], [2.0, 5.0, 4.0, 9.0])
    assert scores["pearson"] == pytest.approx(10 / math.sqrt(5 * 26))
    assert scores["spearmanr"] == pytest.approx(0.8)
    assert scores["combined_score"] == pytest.approx((10 / math.sqrt(130) + 0.8) / 2)


def test_a_constant_prediction_has_no_correlation_and_no_score():
    """As scipy and GLUE's own metric say (NaN), never a score of 0 that a table could rank."""
    import warnings

    from scipy.stats import pearsonr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(pearsonr([2.5, 2.5, 2.5], [1.0, 2.0, 4.0])[0])  # the independent reference
    scores = glue_tasks.glue_metrics(TASKS["stsb"], [2.5, 2.5, 2.5], [1.0, 2.0, 4.0])
    assert all(math.isnan(scores[key]) for key in ("pearson", "spearmanr", "combined_score"))
    metrics = {f"eval_{key}": value for key, value in scores.items()}
    assert glue_tasks.combined_score(TASKS["stsb"], metrics) is None
    undefined = glue_tasks.undefined_metrics(TASKS["stsb"], metrics)
    assert set(undefined) == {"eval_pearson", "eval_spearmanr", "eval_combined_score"}
    assert "every prediction (or every label) is the same" in undefined["eval_pearson"]
    # Matthews correlation of a constant classifier stays 0: GLUE's (scikit-learn's) convention
    assert glue_tasks.glue_metrics(TASKS["cola"], [1, 1, 1], [0, 1, 1])["matthews_correlation"] == 0.0


def test_combined_score_averages_mnli_matched_and_mismatched():
    metrics = {"eval_combined_score": 0.8, "eval_mm_combined_score": 0.7, "eval_loss": 0.5}
    assert glue_tasks.combined_score(TASKS["mnli"], metrics) == pytest.approx(0.75)
    assert glue_tasks.combined_score(TASKS["rte"], {"eval_combined_score": 0.6}) == 0.6
    assert glue_tasks.combined_score(TASKS["rte"], {}) is None


def test_logits_become_label_ids_or_scores():
    logits = np.array([[0.1, 0.9], [2.0, -1.0]])
    assert glue_tasks.logits_to_predictions(TASKS["rte"], logits).tolist() == [1, 0]
    assert glue_tasks.logits_to_predictions(TASKS["stsb"], np.array([[1.5], [4.25]])).tolist() == [1.5, 4.25]


def test_predictions_formatted_as_the_leaderboard_expects():
    assert glue_predictions.format_prediction(TASKS["rte"], 1) == "not_entailment"
    assert glue_predictions.format_prediction(TASKS["mnli"], 2) == "contradiction"
    assert glue_predictions.format_prediction(TASKS["cola"], 1) == "1"
    assert glue_predictions.format_prediction(TASKS["stsb"], 3.14159) == "3.142"
    assert glue_predictions.format_prediction(TASKS["stsb"], -0.4) == "0.000"
    assert glue_predictions.format_prediction(TASKS["stsb"], 5.7) == "5.000"


def test_task_names_are_accepted_as_glue_or_the_hub_spells_them():
    assert glue_tasks.get_task("SST-2") is TASKS["sst2"]
    assert glue_tasks.get_task("sts-b") is TASKS["stsb"]
    assert glue_tasks.get_task("CoLA") is TASKS["cola"]
    with pytest.raises(UsageError, match="unknown task 'sst3'; valid tasks: cola, sst2, mrpc, qqp, stsb, mnli, "
                                         "qnli, rte, wnli"):
        glue_tasks.get_task("sst3")


@given(st.lists(st.integers(min_value=1, max_value=128), min_size=1, max_size=60))
def test_length_order_is_longest_first_and_restores_file_order(lengths):
    order = glue.length_order(lengths)
    sorted_lengths = np.asarray(lengths)[order]
    assert all(a >= b for a, b in zip(sorted_lengths, sorted_lengths[1:]))
    values = np.arange(len(lengths)) * 10
    assert glue.restore_order(values[order], order).tolist() == values.tolist()


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_submission_file_accepts_a_valid_file(tmp_path):
    path = _write(tmp_path / "RTE.tsv", "index\tprediction\n0\tentailment\n1\tnot_entailment\n")
    check_submission_file(path, "rte", 2, indices=["0", "1"])
    path = _write(tmp_path / "STS-B.tsv", "index\tprediction\n0\t3.100\n1\t0.000\n")
    check_submission_file(path, "stsb", 2)


@pytest.mark.parametrize(
    "task, text, message",
    [
        ("rte", "idx\tprediction\n0\tentailment\n", "header"),
        ("rte", "index\tprediction\n0\tentailment\n1\tentailment\n", "2 predictions, expected 1"),
        ("rte", "index\tprediction\n0\tyes\n", "prediction 'yes' is not one of entailment, not_entailment"),
        ("cola", "index\tprediction\n0\tentailment\n", "line 2: prediction 'entailment'"),
        ("stsb", "index\tprediction\n0\t5.5\n", "not a score from 0 to 5"),
        ("stsb", "index\tprediction\n0\t3.1\n", "3 decimals"),
        ("rte", "index\tprediction\n7\tentailment\n", "line 2: index 7, the test file has 0"),
        ("rte", "index\tprediction\tlabel\n0\tentailment\tentailment\n", "header"),
    ],
)
def test_check_submission_file_rejects(tmp_path, task, text, message):
    path = _write(tmp_path / "sub.tsv", text)
    with pytest.raises(UsageError, match=message):
        check_submission_file(path, task, 1, indices=["0"])


def test_written_predictions_pass_the_check(tmp_path):
    path = str(tmp_path / "MNLI-m.tsv")
    glue_predictions.write_predictions(path, TASKS["mnli"], ["10", "11", "12"], np.array([0, 1, 2]))
    check_submission_file(path, "mnli", 3, indices=[10, 11, 12])
    dev_path = str(tmp_path / "dev_predictions.tsv")
    glue_predictions.write_predictions(dev_path, TASKS["stsb"], ["0", "1"], np.array([4.2, 7.0]), np.array([4.0, 5.0]))
    assert open(dev_path).read() == "index\tprediction\tlabel\n0\t4.200\t4.000\n1\t5.000\t5.000\n"
