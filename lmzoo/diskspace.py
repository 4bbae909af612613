"""Free disk space: measured, estimated, and recognised when a write failed for lack of it.

lmzoo.checkpoints checks the space before each checkpoint and the final model, and turns a write that fails
anyway into one line (`OutOfSpaceError`, exit status 4); the tokenized-data cache checks before it builds.
"""

import contextlib
import errno
import os
import shutil

from .errors import OutOfSpaceError

MARGIN = 1.1  # estimates are close, not exact: ask for a tenth more
# What a failed write says when the disk is full: OSError(ENOSPC) from Python, and the messages torch's zip
# writer ("PytorchStreamWriter failed writing file ...: file write failed") and safetensors raise instead.
OUT_OF_SPACE_MESSAGES = ("No space left on device", "file write failed", "Disk quota exceeded")


def format_bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1024


def free_bytes(folder: str) -> int:
    """Free space for this user on the file system that holds `folder` (or its nearest existing parent)."""
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def require_free_space(folder: str, needed: int, what: str, advice: str = "") -> None:
    free = free_bytes(folder)
    if free < needed * MARGIN:
        raise OutOfSpaceError(f"not enough disk space in {folder} for {what}: about {format_bytes(needed)} "
                              f"needed, {format_bytes(free)} free" + (f"; {advice}" if advice else ""))


@contextlib.contextmanager
def out_of_space_in(folder: str, what: str, advice: str):
    """A write inside that fails for lack of space becomes one OutOfSpaceError naming `folder` and `what`."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - anything but a lack of space is re-raised as it was
        if isinstance(err, OutOfSpaceError) or not is_out_of_space(err):
            raise
        raise OutOfSpaceError(f"the disk holding {folder} is full: writing {what} failed "
                              f"({format_bytes(free_bytes(folder))} free); {advice}") from err


def tokenized_build_bytes(text_bytes: int, bytes_per_id: int) -> int:
    """Disk a tokenized cache build needs: its token ids, counted at 3 bytes of text per token (BPE and WordPiece
    on English average about 4.4; 3 leaves room for denser text)."""
    return text_bytes * bytes_per_id // 3


def is_out_of_space(err: BaseException | None) -> bool:
    """Whether `err`, or an error it was raised from, is a write that failed for lack of space."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(message in str(err) for message in OUT_OF_SPACE_MESSAGES):
            return True
        err = err.__cause__ or err.__context__
    return False


def model_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def checkpoint_bytes_estimate(model) -> int:
    """A checkpoint before the first one exists: the weights, plus AdamW's two fp32 moments per trained weight."""
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model_bytes(model) + 2 * 4 * trained
