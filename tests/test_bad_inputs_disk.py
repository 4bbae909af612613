"""A full disk, and model folders damaged after they were saved: one line, nothing lost, and the rerun recovers."""

import json
import sys

import pytest
import torch

import lmzoo.diskspace
import run_glue
from lmzoo.checkpoints import MODEL_SEAL_NAME, SEAL_NAME
from lmzoo.errors import EXIT_OUT_OF_SPACE, run_main

from test_reliability import clm_command

pytestmark = pytest.mark.usefixtures("data_dir")

TORCH_WRITE_FAILED = ("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: "
                      "file write failed")  # what torch.save raises when the disk fills up under it


def clm_args(tmp_path, data_dir, out, *extra):
    return clm_command(tmp_path, data_dir, out, "--max_steps", "20", *extra)[2:]


def results(out):
    return json.loads((out / "all_results.json").read_text())


def test_a_disk_that_fills_up_mid_checkpoint_is_one_line_and_the_rerun_resumes(cli, data_dir, tmp_path,
                                                                              monkeypatch):
    reference = tmp_path / "reference"
    assert cli("run_clm.py", *clm_args(tmp_path, data_dir, reference))[0] == 0

    out = tmp_path / "run"
    real_save = torch.save

    def save_until_the_disk_is_full(obj, path, *args, **kwargs):
        if "checkpoint-20" in str(path):
            with open(path, "wb") as f:
                f.write(b"\0" * 1000)  # what got written before the disk filled up
            raise RuntimeError(TORCH_WRITE_FAILED)
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    code, _, err = cli("run_clm.py", *clm_args(tmp_path, data_dir, out))
    assert code == EXIT_OUT_OF_SPACE
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"run_clm.py: error: the disk holding {out} is full: writing a checkpoint failed (")
    assert lines[-1].endswith("free); removed the cut-short checkpoint-20; kept checkpoint-10; free space and rerun "
                              "the same command to resume")
    assert "Traceback" not in err
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10"]
    assert (out / "checkpoint-10" / SEAL_NAME).is_file()
    assert not (out / "lmzoo_record.json").exists() and not (out / "all_results.json").exists()
    assert not (out / ".lmzoo.lock").exists()

    monkeypatch.setattr(torch, "save", real_save)  # space freed
    code, _, err = cli("run_clm.py", *clm_args(tmp_path, data_dir, out))
    assert code == 0, err
    assert results(out)["eval_loss"] == results(reference)["eval_loss"]  # resumed from checkpoint-10, bit for bit


def test_no_room_for_the_next_checkpoint_is_found_before_writing_it(cli, data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_free_bytes = lmzoo.diskspace.free_bytes

    def free_bytes(folder):  # the disk fills up (with someone else's files) once checkpoint-10 is written
        return 1000 if (out / "checkpoint-10" / SEAL_NAME).exists() else real_free_bytes(folder)

    monkeypatch.setattr(lmzoo.diskspace, "free_bytes", free_bytes)
    code, _, err = cli("run_clm.py", *clm_args(tmp_path, data_dir, out))
    assert code == EXIT_OUT_OF_SPACE
    checkpoint_size = sum(json.loads((out / "checkpoint-10" / SEAL_NAME).read_text())["files"].values())
    assert err.strip().splitlines()[-1] == (
        f"run_clm.py: error: not enough disk space in {out} for checkpoint-20: about "
        f"{lmzoo.diskspace.format_bytes(checkpoint_size)} needed, 1,000 bytes free; kept checkpoint-10; free space "
        "and rerun the same command to resume")
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10"]
    assert not (out / "lmzoo_record.json").exists()


def test_no_room_for_the_tokenized_cache_is_refused_before_tokenizing(cli, data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(lmzoo.diskspace, "free_bytes", lambda folder: 10_000)
    out = tmp_path / "run"
    code, _, err = cli("run_clm.py", *clm_args(tmp_path, data_dir, out, "--cache_dir", tmp_path / "cache"))
    assert code == EXIT_OUT_OF_SPACE
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"run_clm.py: error: not enough disk space in {tmp_path / 'cache' / 'tokenized'}")
    assert " for the tokenized cache of " in line and "needed, 9.8 KiB free; free space, or give --cache_dir" in line
    assert not list((tmp_path / "cache" / "tokenized").glob("clm-*/"))  # no half-built cache left
    assert not out.exists() or not any(out.iterdir())


def test_a_final_model_damaged_after_saving_is_refused_and_the_rerun_saves_it_again(cli, data_dir, tmp_path, capsys,
                                                                                     monkeypatch):
    out = tmp_path / "run"
    args = clm_args(tmp_path, data_dir, out)
    assert cli("run_clm.py", *args)[0] == 0
    sealed = json.loads((out / MODEL_SEAL_NAME).read_text())["files"]
    assert {"model.safetensors", "config.json", "tokenizer_config.json"} <= set(sealed)
    assert not {"all_results.json", "lmzoo_record.json", "trainer_state.json"} & set(sealed)  # records: not the model

    weights = out / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:  # a copy cut short
        f.truncate(size // 2)
    glue_args = ["--model_name_or_path", out, "--task_name", "rte", "--glue_dir", data_dir / "glue", "--do_eval",
                 "--output_dir", tmp_path / "glue"]
    monkeypatch.setattr(sys, "argv", ["run_glue.py"])
    with pytest.raises(SystemExit) as exit_info:
        run_main(run_glue.main)([str(arg) for arg in glue_args])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"run_glue.py: error: --model_name_or_path {out} is damaged: model.safetensors has {size // 2:,} bytes, "
        f"{size:,} when it was saved; rerun the command that made it (it resumes from its last checkpoint and "
        "saves the model again)")

    before = results(out)["eval_loss"]
    assert cli("run_clm.py", *args)[0] == 0  # the same command: resumes at its last step, saves the model again
    assert weights.stat().st_size == size and results(out)["eval_loss"] == before
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)


def test_a_tokenized_cache_cut_short_is_built_again_and_gives_the_same_run(cli, data_dir, tmp_path):
    cache = tmp_path / "cache"
    first, second = tmp_path / "first", tmp_path / "second"
    assert cli("run_clm.py", *clm_args(tmp_path, data_dir, first, "--cache_dir", cache))[0] == 0
    (arrow,) = (cache / "tokenized").glob("clm-*/data/train/*.arrow")
    size = arrow.stat().st_size
    with open(arrow, "r+b") as f:
        f.truncate(size // 3)
    code, _, err = cli("run_clm.py", *clm_args(tmp_path, data_dir, second, "--cache_dir", cache))
    assert code == 0, err
    assert (f"is damaged (data/train/{arrow.name} has {size // 3:,} bytes, {size:,} when it was built); building it "
            "again") in err
    assert arrow.stat().st_size == size
    assert results(second)["eval_loss"] == results(first)["eval_loss"]
