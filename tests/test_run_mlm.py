import json
import math
import subprocess
import sys

import pytest
from transformers import AutoModelForMaskedLM, AutoTokenizer

TINY = "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,intermediate_size=128"


def mlm_args(data_dir, out, *extra):
    return ["--config_name", "bert-tiny", "--config_overrides", TINY,
            "--train_file", data_dir / "wikitext-2-raw" / "wiki.valid.raw",
            "--validation_file", data_dir / "wikitext-2-raw" / "wiki.test.raw",
            "--vocab_size", "2000", "--max_seq_length", "64", "--max_eval_samples", "64",
            "--output_dir", out, "--do_train", "--do_eval", "--per_device_train_batch_size", "16",
            "--learning_rate", "2e-3", "--logging_steps", "10", "--disable_tqdm", "True", "--seed", "7", *extra]


def test_trains_from_scratch_and_leaves_a_loadable_checkpoint_and_record(cli, data_dir, tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = cli("run_mlm.py", *mlm_args(data_dir, out, "--max_steps", "60"))
    assert code == 0, stderr
    record = json.loads((out / "lmzoo_record.json").read_text())
    results = json.loads((out / "all_results.json").read_text())
    assert record["status"] == "completed" and record["steps"] == 60
    assert record["tokenizing_workers"] == 1  # under 20,000 documents: one worker on any machine
    assert record["tokens_seen"] == 60 * 16 * 64 and record["vocab_size"] == 2000
    assert record["corpus"].startswith("wiki.valid.raw") and record["hardware"]["device"] == "cpu"
    assert math.isclose(results["perplexity"], math.exp(results["eval_loss"]), rel_tol=1e-9)
    # far below an untrained model, whose loss is about ln(vocabulary)
    assert results["eval_loss"] < math.log(2000) - 1.0
    assert any("eval_loss" in point for point in record["loss_curve"])
    assert record["command"].startswith("python run_mlm.py --config_name bert-tiny ")
    assert "--max_steps 60" in record["command"]
    model = AutoModelForMaskedLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "BertForMaskedLM" and len(tokenizer) == model.config.vocab_size == 2000
    assert "checkpoint and tokenizer" in stdout


def test_a_test_file_is_evaluated_after_validation_and_recorded(cli, data_dir, tmp_path):
    out = tmp_path / "run"
    test_file = data_dir / "wikitext-2-raw" / "wiki.test.raw"
    code, stdout, err = cli("run_mlm.py", *mlm_args(data_dir, out, "--max_steps", "10", "--test_file", test_file,
                                                    "--max_eval_samples", "40"))
    assert code == 0, err
    record = json.loads((out / "lmzoo_record.json").read_text())
    results = json.loads((out / "all_results.json").read_text())
    assert record["test_examples"] == 40 and record["test_tokens"] > 0  # --max_eval_samples caps both
    assert math.isclose(record["test_perplexity"], math.exp(record["test_loss"]), rel_tol=1e-9)
    assert results["test_loss"] == record["test_loss"]
    # the same text as validation and test, the same masks: the same loss
    assert math.isclose(record["test_loss"], record["eval_loss"], rel_tol=1e-6)
    assert record["corpus"] == "wiki.valid.raw (validation: wiki.test.raw, test: wiki.test.raw)"
    assert "test perplexity" in stdout


def test_resumes_from_the_last_checkpoint_and_refuses_a_foreign_folder(cli, data_dir, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("run_mlm.py", *mlm_args(data_dir, out, "--max_steps", "10", "--save_steps", "10"))
    assert code == 0, err
    code, _, err = cli("run_mlm.py", *mlm_args(data_dir, out, "--max_steps", "20", "--save_steps", "10"))
    assert code == 0, err
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 20
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-20"]

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("someone else's results")
    code, _, err = cli("run_mlm.py", *mlm_args(data_dir, foreign, "--max_steps", "5"))
    assert code == 2 and "--overwrite_output_dir" in err
    assert (foreign / "notes.txt").read_text() == "someone else's results"


@pytest.mark.parametrize("preset, overrides, tokenizer", [
    ("roberta-base", "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,intermediate_size=128", None),
    ("distilbert-base-uncased", "n_layers=2,dim=64,n_heads=2,hidden_dim=128", "bert-base-uncased"),
])
def test_roberta_and_distilbert_overrides(cli, data_dir, tmp_path, preset, overrides, tokenizer):
    args = mlm_args(data_dir, tmp_path / "run", "--max_steps", "8")
    args[args.index("bert-tiny")] = preset
    args[args.index(TINY)] = overrides
    if tokenizer:
        args += ["--tokenizer_name", data_dir / "tokenizers" / tokenizer]
    code, _, err = cli("run_mlm.py", *args)
    assert code == 0, err
    record = json.loads((tmp_path / "run" / "lmzoo_record.json").read_text())
    assert record["model_type"] == preset.split("-")[0]
    assert AutoModelForMaskedLM.from_pretrained(tmp_path / "run").config.model_type == record["model_type"]


def test_a_usage_error_is_one_line_from_a_real_process(tmp_path, repo_root):
    proc = subprocess.run([sys.executable, str(repo_root / "run_mlm.py"), "--config_name", "no/such-model",
                           "--dataset_name", "demo", "--output_dir", str(tmp_path / "o"), "--do_train"],
                          capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                               "HOME": str(tmp_path)})
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "no/such-model" in lines[0] and "bert-tiny" in lines[0], proc.stderr


def test_the_record_gives_the_vocabulary_that_was_trained_not_the_one_asked_for(cli, data_dir, tmp_path):
    """--vocab_size 3 cannot be had (a tokenizer keeps every character of the corpus): the record and the model
    say what the tokenizer really has, and the record keeps what was asked for beside it."""
    out = tmp_path / "run"
    args = mlm_args(data_dir, out, "--max_steps", "2", "--max_eval_samples", "9")
    args[args.index("--vocab_size") + 1] = "3"
    code, _, err = cli("run_mlm.py", *args)
    assert code == 0, err
    record = json.loads((out / "lmzoo_record.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert record["vocab_size"] == len(tokenizer) == record["embedding_rows"] > 100
    assert record["vocab_size_requested"] == 3 and "asked for 3" in record["tokenizer"]
    assert record["eval_examples"] == 9 and 0 < record["eval_tokens"] < 9 * 64
    assert AutoModelForMaskedLM.from_pretrained(out).config.vocab_size == len(tokenizer)
