"""Checkpoint folders: sealed when complete, checked before they are resumed.

The Trainer writes checkpoint-N/ file by file (weights, optimizer, scheduler, RNG states, trainer_state.json
last). A kill or a full disk can leave it cut short, and damage after the fact (a truncated copy) leaves files
that look whole by name. So once the Trainer has saved a checkpoint, `CheckpointSeal` flushes its files to disk
and writes a seal listing every file and its size, last. A checkpoint is resumed only when its trainer state
reads and every file has the size its seal lists; otherwise the next older one is taken, with a one-line
warning naming the folder skipped and why. (Checkpoints written before seals existed are judged by their
trainer state alone, as before, unless a sealed checkpoint sits beside them.)

The final model in --output_dir gets a seal of its own; a folder whose files no longer match it is refused with
one line when a script is asked to load it (fine-tuning, continued pretraining, a distillation teacher).
"""

import contextlib
import json
import os
import shutil
import sys

from transformers import TrainerCallback

from .cache import size_mismatch
from .diskspace import (checkpoint_bytes_estimate, format_bytes, free_bytes, is_out_of_space, model_bytes,
                        require_free_space)
from .errors import OutOfSpaceError, UsageError

SEAL_NAME = ".lmzoo-complete.json"
MODEL_SEAL_NAME = ".lmzoo-model-complete.json"  # the final model's, beside its files in --output_dir
PREFIX = "checkpoint-"


def seal(folder: str, name: str = SEAL_NAME, files: list[str] | None = None) -> None:
    """Flush `files` of `folder` (default: every file in it and its subfolders) to disk, then write the seal `name`
    listing them with their sizes (itself flushed, then renamed into place)."""
    from .records import atomic_write_json, share_like_umask

    share_like_umask(folder)
    if files is None:
        files = [os.path.relpath(os.path.join(root, file_name), folder)
                 for root, _, names in os.walk(folder) for file_name in names
                 if file_name != SEAL_NAME and not file_name.startswith(".tmp-")]
    sizes = {}
    for relative in sorted(files):
        path = os.path.join(folder, relative)
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        sizes[relative] = os.path.getsize(path)
    atomic_write_json(os.path.join(folder, name), {"files": sizes})


def damage(folder: str, require_seal: bool = False) -> str | None:
    """Why checkpoint `folder` cannot be resumed, or None when it can."""
    if not _readable_json(os.path.join(folder, "trainer_state.json")):
        return "its trainer_state.json is missing or cut short (saving was interrupted)"
    if not os.path.exists(os.path.join(folder, SEAL_NAME)):
        return "it was never sealed (saving was interrupted)" if require_seal else None
    return _size_damage(folder, SEAL_NAME)


def _seal_sizes(folder: str, name: str) -> dict | None:
    try:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            sizes = json.load(f)["files"]
        return sizes if isinstance(sizes, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _size_damage(folder: str, seal_name: str) -> str | None:
    sizes = _seal_sizes(folder, seal_name)
    if sizes is None:
        return f"its seal {seal_name} cannot be read"
    return size_mismatch(folder, sizes, "saved")


def sealed_size(folder: str) -> int | None:
    """Bytes of a sealed checkpoint, from its seal; None when it has none."""
    sizes = _seal_sizes(folder, SEAL_NAME)
    return sum(sizes.values()) if sizes else None


def file_stamps(folder: str) -> dict[str, tuple[int, int]]:
    """name -> (size, mtime in ns) of the files directly in `folder`: taken before a save, to see what it wrote."""
    if not os.path.isdir(folder):
        return {}
    return {entry.name: (entry.stat().st_size, entry.stat().st_mtime_ns) for entry in os.scandir(folder)
            if entry.is_file() and not entry.name.startswith(".")}


def seal_final_model(output_dir: str, stamps_before_save: dict) -> None:
    """Seal the files the model and tokenizer save wrote into `output_dir`: those new or changed since
    `stamps_before_save` (records, predictions and checkpoint folders are not part of the model)."""
    written = [name for name, stamp in file_stamps(output_dir).items() if stamps_before_save.get(name) != stamp]
    seal(output_dir, MODEL_SEAL_NAME, written)


def final_model_damage(folder: str) -> str | None:
    """Why the final model in `folder` cannot be trusted (a file cut short or missing since it was saved), or None.
    Folders saved without a seal (by other tools) are taken as they are."""
    if not os.path.exists(os.path.join(folder, MODEL_SEAL_NAME)):
        return None
    return _size_damage(folder, MODEL_SEAL_NAME)


def check_model_folder(folder: str, flag: str) -> None:
    """A one-line error when a model folder lmzoo saved has been damaged since (a copy cut short, a full disk)."""
    if os.path.isdir(folder):
        why = final_model_damage(folder)
        if why:
            raise UsageError(f"{flag} {folder} is damaged: {why}; rerun the command that made it (it resumes from "
                             "its last checkpoint and saves the model again)")


def checkpoints(folder: str) -> list[tuple[int, str]]:
    """(step, path) of the checkpoint-N folders in `folder`, newest first."""
    found = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith(PREFIX) and name[len(PREFIX):].isdigit() and os.path.isdir(path):
            found.append((int(name[len(PREFIX):]), path))
    return sorted(found, reverse=True)


def latest_complete_checkpoint(folder: str, warn: bool = True) -> str | None:
    """The newest checkpoint in `folder` that can be resumed; each newer one skipped is named on stderr."""
    found = checkpoints(folder)
    sealed = any(os.path.exists(os.path.join(path, SEAL_NAME)) for _, path in found)
    for _, path in found:
        why = damage(path, require_seal=sealed)
        if why is None:
            return path
        if warn:
            print(f"[lmzoo] warning: skipping {path}: {why}", file=sys.stderr, flush=True)
    return None


def _readable_json(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            json.load(f)
        return True
    except (OSError, ValueError):
        return False


class CheckpointSeal(TrainerCallback):
    """Seals each checkpoint once the Trainer has written it (on the main process, after every rank has)."""

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # sharded saves (FSDP, DeepSpeed): every rank's files are written before the seal
        folder = os.path.join(args.output_dir, f"{PREFIX}{state.global_step}")
        if state.is_world_process_zero and os.path.isdir(folder):
            seal(folder)


# ----------------------------------------------------------------------------------------------------------------
# A full disk: checked before each checkpoint and the final model; one line, and nothing cut short left, when a
# write fails anyway (another process filled the disk). The last complete checkpoint and every record stay as
# they were, and rerunning the same command after freeing space resumes from that checkpoint.


@contextlib.contextmanager
def out_of_space_is_one_line(trainer, what: str):
    """Turn a lack of space, found by a check or by a failed write, into one OutOfSpaceError that says what was
    kept; a checkpoint the failed write cut short is removed (it can never be resumed, and it holds the space)."""
    output_dir = trainer.args.output_dir
    try:
        yield
    except Exception as err:  # noqa: BLE001 - anything but a lack of space is re-raised as it was
        if not isinstance(err, OutOfSpaceError) and not is_out_of_space(err):
            raise
        cut_short = os.path.join(output_dir, f"{PREFIX}{trainer.state.global_step}")
        removed = os.path.isdir(cut_short) and not os.path.exists(os.path.join(cut_short, SEAL_NAME))
        if removed:
            shutil.rmtree(cut_short, ignore_errors=True)
        kept = latest_complete_checkpoint(output_dir, warn=False) if os.path.isdir(output_dir) else None
        if isinstance(err, OutOfSpaceError):
            parts = [str(err)]
        else:
            parts = [f"the disk holding {output_dir} is full: writing {what} failed "
                     f"({format_bytes(free_bytes(output_dir))} free)"]
        if removed:
            parts.append(f"removed the cut-short {os.path.basename(cut_short)}")
        parts.append(f"kept {os.path.basename(kept)}; free space and rerun the same command to resume" if kept
                     else "free space and rerun the same command")
        raise OutOfSpaceError("; ".join(parts)) from err


def save_final_model(trainer) -> None:
    """trainer.save_model() (the model and its tokenizer) into --output_dir: room checked first, sealed after."""
    output_dir = trainer.args.output_dir
    stamps = file_stamps(output_dir)
    with out_of_space_is_one_line(trainer, "the final model"):
        require_free_space(output_dir, model_bytes(trainer.model), "the final model")
        trainer.save_model()
        if trainer.is_world_process_zero():
            seal_final_model(output_dir, stamps)


class CheckpointSpaceCheck(TrainerCallback):
    """Before the Trainer writes a checkpoint: is there room for one more? (Old ones are rotated out only after the
    new one is written, so the room needed is a whole checkpoint.)"""

    def __init__(self, model):
        self.model = model

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:  # on every process: one that stopped alone would leave the others waiting
            found = checkpoints(args.output_dir) if os.path.isdir(args.output_dir) else []
            sizes = [sealed_size(path) for _, path in found]
            needed = next((size for size in sizes if size), None) or checkpoint_bytes_estimate(self.model)
            require_free_space(args.output_dir, needed, f"{PREFIX}{state.global_step}")
        return control
