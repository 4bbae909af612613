"""Build-once folders on disk: tokenized corpora and trained tokenizers.

One process builds (the local main process under torchrun, and among several runs sharing the cache, whoever
takes the file lock first); it builds into a temporary folder and renames it into place with a ready marker that
lists every file's size, so a kill never leaves a half-written cache that a later run would trust, and a cache
damaged afterwards (a file cut short or deleted) is found on its next use and built again. Other processes wait by polling the file
system, not at a process-group barrier, so a long build never hits the distributed timeout.
"""

import contextlib
import fcntl
import glob
import os
import shutil
import sys
import time

from .errors import UsageError
from .records import atomic_directory, atomic_write_json, read_json

READY_MARKER = "lmzoo_ready.json"


def default_cache_dir() -> str:
    return os.environ.get("LMZOO_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lmzoo")


def is_local_main_process() -> bool:
    return int(os.environ.get("LOCAL_RANK", "0")) == 0


def is_ready(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, READY_MARKER))


@contextlib.contextmanager
def file_lock(path: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released by the OS if this process dies
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_once(folder: str, build, description: str, poll_seconds: float = 2.0, required: bool = False) -> str:
    """Make sure `folder` holds a complete build made by `build(tmp_folder)`; return `folder`. A build damaged since
    it was made (a file cut short or missing) is rebuilt, with a one-line warning. `required`: never build; a
    missing or damaged build is a one-line error (--require_cache)."""
    if is_sound(folder):
        return folder
    if required:
        why = f"is damaged ({damage(folder)})" if is_ready(folder) else "is not built"
        raise UsageError(f"--require_cache: {description} {why} in {folder}; build it first with the same command "
                         "and --prepare_only")
    if is_local_main_process():
        with file_lock(folder + ".lock"):
            if not is_sound(folder):
                why = damage(folder) if is_ready(folder) else None
                if why:
                    print(f"[lmzoo] warning: {folder} is damaged ({why}); building it again", file=sys.stderr,
                          flush=True)
                    os.remove(os.path.join(folder, READY_MARKER))  # no other process may take it meanwhile
                _remove_stale_temporaries(folder)
                print(f"[lmzoo] building {description} in {folder}", file=sys.stderr, flush=True)
                with atomic_directory(folder) as tmp:
                    build(tmp)
                    atomic_write_json(os.path.join(tmp, READY_MARKER),
                                      {"description": description, "files": file_sizes(tmp)})
        return folder
    waited, next_note = 0.0, 60.0
    while not is_sound(folder):
        time.sleep(poll_seconds)
        waited += poll_seconds
        if waited >= next_note:
            print(f"[lmzoo] rank {os.environ.get('RANK', '?')} still waiting for {description} ({int(waited)} s)",
                  file=sys.stderr, flush=True)
            next_note += 60.0
    return folder


def file_sizes(folder: str) -> dict[str, int]:
    """Relative path -> size of every file under `folder`: written into the ready marker, checked on each use."""
    return {os.path.relpath(os.path.join(root, name), folder): os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(folder) for name in names if name != READY_MARKER}


def damage(folder: str) -> str | None:
    """Why a ready build can no longer be trusted, or None. (Builds made before sizes were recorded: None.)"""
    try:
        sizes = ready_metadata(folder).get("files")
    except (OSError, ValueError):
        return f"its {READY_MARKER} cannot be read"
    return size_mismatch(folder, sizes or {}, "built")


def size_mismatch(folder: str, sizes: dict, when: str) -> str | None:
    """The first file of `sizes` (relative path -> bytes) missing from `folder` or of another size, in words; None
    when all match. Shared by cache builds and sealed checkpoints and models (lmzoo.checkpoints)."""
    for name, size in sorted(sizes.items()):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f"{name} is missing"
        if os.path.getsize(path) != size:
            return f"{name} has {os.path.getsize(path):,} bytes, {size:,} when it was {when}"
    return None


def is_sound(folder: str) -> bool:
    return is_ready(folder) and damage(folder) is None


def ready_metadata(folder: str) -> dict:
    return read_json(os.path.join(folder, READY_MARKER))


def _remove_stale_temporaries(folder: str) -> None:
    parent, name = os.path.split(os.path.abspath(folder))
    for stale in glob.glob(os.path.join(parent, ".tmp-" + glob.escape(name) + "-*")):
        shutil.rmtree(stale, ignore_errors=True)
