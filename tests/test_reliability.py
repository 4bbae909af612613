"""What survives what: kills mid-step and mid-checkpoint, atomic records, a diverged loss."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from lmzoo.checkpoints import SEAL_NAME, latest_complete_checkpoint
from lmzoo.records import atomic_write_json

TINY_GPT2 = "n_layer=1,n_embd=32,n_head=2"


def clm_command(repo_root, data_dir, out, *extra):
    return [sys.executable, str(repo_root / "run_clm.py"), "--config_name", "gpt2", "--config_overrides", TINY_GPT2,
            "--train_file", str(data_dir / "tinyshakespeare" / "input.txt"), "--vocab_size", "600",
            "--block_size", "32", "--max_eval_samples", "16", "--output_dir", str(out), "--do_train", "--do_eval",
            "--max_steps", "40", "--save_steps", "10", "--per_device_train_batch_size", "8", "--logging_steps", "5",
            "--disable_tqdm", "True", "--seed", "5", *extra]


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def final_eval_loss(out):
    return json.loads((out / "all_results.json").read_text())["eval_loss"]


def test_sigkill_mid_training_then_the_same_command_ends_where_an_uninterrupted_run_does(repo_root, data_dir,
                                                                                         tmp_path, env):
    whole = tmp_path / "whole"
    subprocess.run(clm_command(repo_root, data_dir, whole), env=env, check=True, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    command = clm_command(repo_root, data_dir, killed)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while latest_complete_checkpoint(killed) is None if killed.exists() else True:
        assert time.time() < deadline and proc.poll() is None, "no checkpoint before the run ended"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-step, right after the first checkpoint landed
    proc.wait()
    assert not (killed / "all_results.json").exists()
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    # CPU kernels are deterministic and the Trainer restores optimizer, scheduler and RNG state (the collators
    # draw from the global RNG), so the resumed run is the uninterrupted one, bit for bit.
    assert final_eval_loss(killed) == final_eval_loss(whole)
    assert json.loads((killed / "lmzoo_record.json").read_text())["steps"] == 40


def test_a_checkpoint_cut_short_is_never_resumed(repo_root, data_dir, tmp_path, env):
    out = tmp_path / "run"
    command = clm_command(repo_root, data_dir, out, "--max_steps", "20")
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    reference = final_eval_loss(out)
    # a kill while checkpoint-30 was being written: weights there, trainer state cut in half
    shutil.copytree(out / "checkpoint-20", out / "checkpoint-30")
    state = (out / "checkpoint-30" / "trainer_state.json").read_text()
    (out / "checkpoint-30" / "trainer_state.json").write_text(state[: len(state) // 2])
    assert latest_complete_checkpoint(str(out)).endswith("checkpoint-20")
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "checkpoint-20" in proc.stdout + proc.stderr  # resumed from the complete one
    assert final_eval_loss(out) == reference


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "lmzoo_record.json"
    atomic_write_json(str(path), {"eval_loss": 1.0})

    def killed(*args):
        raise KeyboardInterrupt  # stands for a kill between writing the temporary file and renaming it

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(str(path), {"eval_loss": 2.0})
    assert json.loads(path.read_text()) == {"eval_loss": 1.0}
    assert os.listdir(tmp_path) == ["lmzoo_record.json"]  # no temporary left behind


def test_a_diverged_run_stops_keeps_the_good_checkpoints_and_says_so(cli, data_dir, tmp_path):
    out = tmp_path / "run"
    args = clm_command(tmp_path, data_dir, out, "--save_steps", "1", "--learning_rate", "1e6", "--max_grad_norm", "0",
                       "--warmup_steps", "0", "--save_total_limit", "5")[2:]
    code, stdout, _ = cli("run_clm.py", *args)
    assert code == 3
    record = json.loads((out / "lmzoo_record.json").read_text())
    assert record["status"] == "diverged" and record["eval_loss"] is None
    assert "training diverged" in stdout and "last good checkpoint" in stdout
    saved = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert saved and max(saved) == record["diverged_at_step"] - 1  # every good step saved, nothing after
    assert not (out / "model.safetensors").exists()  # no final model from the diverged weights


HOLD_OUTPUT_DIR = """
import sys, time
from lmzoo.run_folder import hold_output_dir
hold_output_dir(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_run_into_a_busy_output_dir_is_refused_and_a_dead_runs_lock_is_taken_over(repo_root, data_dir,
                                                                                         tmp_path, env):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_OUTPUT_DIR, str(out)], env={**env, "PYTHONPATH": str(repo_root)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # as a run that is training there
        refused = subprocess.run(clm_command(repo_root, data_dir, out, "--max_steps", "2"), env=env,
                                 capture_output=True, text=True, timeout=600)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert f"--output_dir {out} is in use by another run (host " in refused.stderr
        assert f"pid {holder.pid})" in refused.stderr and os.listdir(out) == [".lmzoo.lock"]
    finally:
        holder.kill()  # dies without cleaning up: its lock file stays, the lock goes with the process
        holder.wait()
    done = subprocess.run(clm_command(repo_root, data_dir, out, "--max_steps", "2"), env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "lmzoo_record.json").exists()


def test_resume_from_a_checkpoint_that_is_not_there_is_refused(cli, data_dir, tmp_path):
    out = tmp_path / "run"
    for asked, message in ((str(tmp_path / "checkpoint-7"), "does not exist"),
                           ("True", "holds no complete checkpoint-N folder to resume")):
        argv = clm_command(tmp_path, data_dir, out, "--resume_from_checkpoint", asked)[2:]
        code, _, err = cli("run_clm.py", *argv)
        assert code == 2 and f"--resume_from_checkpoint {asked}" in err and message in err, err
        assert not (out / "lmzoo_record.json").exists()


def test_a_damaged_checkpoint_is_skipped_with_a_warning_and_the_older_one_resumed(repo_root, data_dir, tmp_path, env):
    out = tmp_path / "run"
    command = clm_command(repo_root, data_dir, out, "--max_steps", "20")
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    reference = final_eval_loss(out)
    assert (out / "checkpoint-10" / SEAL_NAME).is_file() and (out / "checkpoint-20" / SEAL_NAME).is_file()
    weights = out / "checkpoint-20" / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:  # as a copy cut short, or a disk that filled up, would leave it
        f.truncate(size // 2)
    assert latest_complete_checkpoint(str(out), warn=False).endswith("checkpoint-10")
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (f"skipping {out / 'checkpoint-20'}: model.safetensors has {size // 2:,} bytes, {size:,} when it was "
            "saved") in proc.stderr
    assert final_eval_loss(out) == reference  # ten steps again from checkpoint-10: the same run, bit for bit


def test_outputs_and_caches_get_the_users_umask_not_owner_only(cli, data_dir, tmp_path):
    """safetensors writes 0600 and mkdtemp makes 0700 folders: a group sharing runs could not read them."""
    previous = os.umask(0o022)
    try:
        out = tmp_path / "run"
        argv = clm_command(tmp_path, data_dir, out, "--max_steps", "10", "--cache_dir", tmp_path / "cache")[2:]
        code, _, err = cli("run_clm.py", *argv)
        assert code == 0, err
    finally:
        os.umask(previous)
    for path in (out / "model.safetensors", out / "checkpoint-10" / "model.safetensors", out / "lmzoo_record.json"):
        assert path.stat().st_mode & 0o777 == 0o644, path
    caches = list((tmp_path / "cache" / "tokenized").iterdir()) + list((tmp_path / "cache" / "tokenizers").iterdir())
    assert caches and all(c.stat().st_mode & 0o777 == 0o755 for c in caches if c.is_dir())


def test_the_time_limit_stops_at_the_first_step_past_it_and_only_once():
    from types import SimpleNamespace

    from lmzoo.callbacks import TrainingTimeLimit

    now = [0.0]
    limit = TrainingTimeLimit(minutes=1, clock=lambda: now[0])
    args, state = SimpleNamespace(world_size=1), SimpleNamespace(global_step=0, max_steps=1000)
    control = SimpleNamespace(should_training_stop=False)
    limit.on_train_begin(args, state, control)
    for step in range(1, 100):
        now[0] += 7.0  # step 9 ends at 63 s
        state.global_step = step
        limit.on_step_end(args, state, control)
        if control.should_training_stop:
            break
    assert (state.global_step, limit.stopped_at_step) == (9, 9)


def test_a_run_past_its_time_limit_still_evaluates_saves_and_says_where_it_stopped(repo_root, data_dir, tmp_path,
                                                                                   env):
    out = tmp_path / "run"
    proc = subprocess.run(clm_command(repo_root, data_dir, out, "--max_steps", "100000", "--save_strategy", "no",
                                      "--max_train_minutes", "0.05"),
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "lmzoo_record.json").read_text())
    stopped = record["time_limit"]["stopped_at_step"]
    assert record["status"] == "completed" and 0 < stopped == record["steps"] < 100000
    assert record["time_limit"] == {"minutes": 0.05, "stopped_at_step": stopped, "planned_steps": 100000}
    assert record["eval_loss"] is not None and (out / "model.safetensors").is_file()
    assert f"stopped by --max_train_minutes 0.05 at step {stopped} of 100000" in proc.stdout


def test_a_time_limit_of_nothing_is_refused_in_one_line(repo_root, data_dir, tmp_path, env):
    proc = subprocess.run(clm_command(repo_root, data_dir, tmp_path / "run", "--max_train_minutes", "0"),
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and not (tmp_path / "run").exists()
    assert proc.stderr.strip().splitlines()[-1] == "run_clm.py: error: --max_train_minutes must be more than 0, got 0.0"


def test_under_torchrun_every_process_stops_at_the_same_step(repo_root, data_dir, tmp_path, env):
    """The main process's clock decides, broadcast every 10 steps: a process that stopped alone would leave the
    other waiting in its next gradient all-reduce until the timeout."""
    out = tmp_path / "run"
    command = clm_command(repo_root, data_dir, out, "--max_steps", "100000", "--save_strategy", "no",
                          "--max_train_minutes", "0.1", "--ddp_backend", "gloo")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29531", *command[1:]], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "lmzoo_record.json").read_text())
    stopped = record["time_limit"]["stopped_at_step"]
    assert record["world_size"] == 2 and stopped == record["steps"] and stopped % 10 == 0
    assert record["eval_loss"] is not None and (out / "model.safetensors").is_file()
