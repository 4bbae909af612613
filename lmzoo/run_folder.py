"""A run's folder and its life: one run at a time per --output_dir (a lock), the checkpoint to resume, then
train -> divergence guard -> save -> results, the same for the pretraining scripts and run_glue.py.

Checkpoints are sealed and checked by lmzoo.checkpoints; results are written atomically by lmzoo.records.
"""

import atexit
import contextlib
import fcntl
import os
import socket

from .checkpoints import damage, latest_complete_checkpoint, out_of_space_is_one_line, save_final_model
from .errors import EXIT_DIVERGED, UsageError, on_usage_error, require
from .records import write_run_results


def prepare_output_dir(training_args) -> str | None:
    """Check --output_dir before any long work, and hold it; return the checkpoint to resume from, if any.

    A folder holding a checkpoint is resumed (the newest complete one); a non-empty folder without one holds
    another run and is refused unless --overwrite_output_dir. --resume_from_checkpoint names a checkpoint
    folder that must exist (or `True`/`latest`: the newest in --output_dir, which must have one).
    """
    out = training_args.output_dir
    require(out is not None, "--output_dir is required")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--output_dir {out} is a file, expected a folder")
    existed = os.path.isdir(out)
    check_writable_dir(out, "--output_dir")
    hold_output_dir(out)
    if training_args.resume_from_checkpoint:
        require(not training_args.overwrite_output_dir,
                "--resume_from_checkpoint and --overwrite_output_dir contradict each other: choose one")
        return checked_resume_checkpoint(training_args.resume_from_checkpoint, out)
    if not existed or training_args.overwrite_output_dir:
        return None
    checkpoint = latest_complete_checkpoint(out)
    if checkpoint is not None:
        return checkpoint
    entries = [e for e in os.listdir(out) if not e.startswith(".")]
    if entries and training_args.do_train:
        raise UsageError(
            f"--output_dir {out} already holds another run ({', '.join(sorted(entries)[:3])}...) and no checkpoint to "
            "resume; pass --overwrite_output_dir to replace it or choose another folder"
        )
    return None


def checked_resume_checkpoint(asked: str, output_dir: str) -> str:
    """The checkpoint --resume_from_checkpoint names, refused in one line unless it is a complete one."""
    if asked.lower() in ("true", "latest"):
        checkpoint = latest_complete_checkpoint(output_dir)
        require(checkpoint is not None, f"--resume_from_checkpoint {asked}: --output_dir {output_dir} holds no "
                                        "complete checkpoint-N folder to resume")
        return checkpoint
    require(os.path.isdir(asked), f"--resume_from_checkpoint {asked} does not exist (expected a checkpoint-N "
                                  "folder; leave the flag out to start afresh)")
    why = damage(asked)
    require(why is None, f"--resume_from_checkpoint {asked} cannot be resumed: {why}")
    return asked


# Output folders this process holds: flock'd lock files, kept open (the OS releases them when the process dies,
# however it dies, so a dead run's lock is taken over without anyone deleting it).
_held_output_dirs: dict[str, tuple[str, object]] = {}
OUTPUT_LOCK_NAME = ".lmzoo.lock"


def hold_output_dir(folder: str) -> None:
    """Refuse a second run into a folder another live process is writing (the main process of a run holds it)."""
    if os.environ.get("RANK", "0") != "0":
        return  # ranks of one torchrun job share the folder; rank 0 holds it for them
    key = os.path.realpath(folder)
    if key in _held_output_dirs:
        return
    path = os.path.join(folder, OUTPUT_LOCK_NAME)
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise UsageError(f"--output_dir {folder} is in use by another run ({owner}); wait for it to end or "
                             "choose another folder") from None
        if _same_file(handle, path):
            break
        handle.close()  # its holder removed it between our open and our lock: take the new one
    handle.seek(0)
    handle.truncate()
    handle.write(f"host {socket.gethostname()}, pid {os.getpid()}")
    handle.flush()
    if not _held_output_dirs:
        atexit.register(release_output_dirs)
        on_usage_error(release_output_dirs)
    _held_output_dirs[key] = (path, handle)


def _same_file(handle, path: str) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def release_output_dirs() -> None:
    """Remove the lock files this process holds (still holding them, so no one else can be between)."""
    for key, (path, handle) in list(_held_output_dirs.items()):
        with contextlib.suppress(OSError):
            if _same_file(handle, path):
                os.unlink(path)
        handle.close()
        del _held_output_dirs[key]


def check_writable_dir(path: str, flag: str) -> None:
    """Create the folder if needed and prove we can write in it (permission bits lie to root)."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".lmzoo-write-probe-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as err:
        raise UsageError(f"{flag} {path} is not writable ({err.strerror or err})") from err


# ----------------------------------------------------------------------------------------------------------------
# The lifecycle


def train_and_save(trainer, resume_from: str | None, guard, save_model: bool = True) -> tuple[dict, bool]:
    """Train (resuming `resume_from`), then save the final model and tokenizer unless the run diverged (the
    checkpoints written before the divergence stay). Returns (the training metrics, whether it diverged)."""
    with out_of_space_is_one_line(trainer, "a checkpoint"):
        result = trainer.train(resume_from_checkpoint=resume_from)
    diverged = guard is not None and guard.diverged_at_step is not None
    if not diverged:
        if save_model:
            save_final_model(trainer)  # model + tokenizer (processing_class), sealed
        trainer.save_state()
    return dict(result.metrics), diverged


def write_results(trainer, output_dir: str, metrics: dict, record: dict) -> None:
    """all_results.json and lmzoo_record.json, by the main process only."""
    if trainer.is_world_process_zero():
        write_run_results(output_dir, metrics, record)


def exit_if_diverged(diverged: bool) -> None:
    """A diverged run ends with its own exit status (the sweep records the point as diverged)."""
    if diverged:
        raise SystemExit(EXIT_DIVERGED)
