"""Results records and atomic writes.

Every run leaves `all_results.json` (the flat metrics, as the Hugging Face examples do) and `lmzoo_record.json`
(what the zoo tables are built from: what was trained, on what, for how long, with which result, on which
hardware). Files are written to a temporary name and renamed into place, so a kill never leaves half a file.
"""

import contextlib
import json
import os
import platform
import shutil
import tempfile
import time

RECORD_NAME = "lmzoo_record.json"
ALL_RESULTS_NAME = "all_results.json"


def atomic_write_text(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_directory(final_path: str):
    """Yield a temporary folder beside `final_path`; on success it replaces `final_path` in one rename."""
    parent = os.path.dirname(os.path.abspath(final_path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(final_path) + "-")
    try:
        yield tmp
        if os.path.isdir(final_path):
            shutil.rmtree(final_path)
        os.replace(tmp, final_path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _json_default(value):
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def hardware() -> dict:
    """Where the run happened, in words a table reader understands."""
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        info["device"] = "cuda"
        info["device_name"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    else:
        info["device"] = "cpu"
        info["device_name"] = platform.processor() or platform.machine()
        info["gpu_count"] = 0
    info["world_size"] = int(os.environ.get("WORLD_SIZE", "1"))
    return info


def write_run_results(output_dir: str, metrics: dict, record: dict) -> dict:
    """Write all_results.json and the results record; returns the record as written."""
    full = dict(record)
    full.setdefault("finished_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    full.setdefault("hardware", hardware())
    full["metrics"] = dict(metrics)
    atomic_write_json(os.path.join(output_dir, ALL_RESULTS_NAME), metrics)
    atomic_write_json(os.path.join(output_dir, RECORD_NAME), full)
    return full
