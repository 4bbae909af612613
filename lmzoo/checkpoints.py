"""Checkpoint folders: sealed when complete, checked before they are resumed.

The Trainer writes checkpoint-N/ file by file (weights, optimizer, scheduler, RNG states, trainer_state.json
last). A kill or a full disk can leave it cut short, and damage after the fact (a truncated copy) leaves files
that look whole by name. So once the Trainer has saved a checkpoint, `CheckpointSeal` flushes its files to disk
and writes a seal listing every file and its size, last. A checkpoint is resumed only when its trainer state
reads and every file has the size its seal lists; otherwise the next older one is taken, with a one-line
warning naming the folder skipped and why. (Checkpoints written before seals existed are judged by their
trainer state alone, as before, unless a sealed checkpoint sits beside them.)
"""

import json
import os
import sys

from transformers import TrainerCallback

SEAL_NAME = ".lmzoo-complete.json"
PREFIX = "checkpoint-"


def seal(folder: str) -> None:
    """Flush every file of `folder` to disk, then write the seal (itself flushed, then renamed into place)."""
    from .records import atomic_write_json, share_like_umask

    share_like_umask(folder)
    sizes = {}
    for root, _, names in os.walk(folder):
        for name in names:
            if name == SEAL_NAME or name.startswith(".tmp-"):
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            sizes[os.path.relpath(path, folder)] = os.path.getsize(path)
    atomic_write_json(os.path.join(folder, SEAL_NAME), {"files": sizes})


def damage(folder: str, require_seal: bool = False) -> str | None:
    """Why `folder` cannot be resumed, or None when it can."""
    if not _readable_json(os.path.join(folder, "trainer_state.json")):
        return "its trainer_state.json is missing or cut short (saving was interrupted)"
    seal_path = os.path.join(folder, SEAL_NAME)
    if not os.path.exists(seal_path):
        return "it was never sealed (saving was interrupted)" if require_seal else None
    try:
        with open(seal_path, encoding="utf-8") as f:
            sizes = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"its seal {SEAL_NAME} cannot be read"
    for name, size in sorted(sizes.items()):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f"{name} is missing"
        if os.path.getsize(path) != size:
            return f"{name} has {os.path.getsize(path):,} bytes, {size:,} when it was saved"
    return None


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
