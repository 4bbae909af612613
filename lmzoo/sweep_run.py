"""One grid point's run for the sweep: its command line, its log, a failure record with a one-line reason when
it fails, and the weights it leaves (deleted once recorded unless KEEP_CHECKPOINTS=1)."""

import contextlib
import os
import shlex
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

from .cpus import available_cpus
from .errors import EXIT_OUT_OF_SPACE
from .records import (FINISHED_STATUSES, RECORD_NAME, RecordError, batch_fields, glue_failure_record, load_record,
                      write_record)
from .sweep_settings import Settings
from .zoo_grid import format_lr, format_number, record_status

LOG_NAME = "run.log"
# What a finished run's folder loses unless KEEP_CHECKPOINTS=1: weights, optimizer states, tokenizer copies.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model")


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


def is_finished(folder: str) -> bool:
    record = read_record(folder)
    return record is not None and record_status(record) in FINISHED_STATUSES


def read_record(folder: str) -> dict | None:
    path = os.path.join(folder, RECORD_NAME)
    try:
        return load_record(path)
    except RecordError:  # absent, cut short by a kill, or not a whole record: either way not finished
        return None


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


def cpu_threads_per_job(jobs: int) -> int:
    return max(1, available_cpus() // jobs)


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
        elif self.settings.cpu_jobs > 1 and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(cpu_threads_per_job(self.settings.cpu_jobs))  # no oversubscription
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
