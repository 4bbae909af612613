"""Results records: the one schema every writer and reader shares, and atomic writes.

Every run leaves `all_results.json` (the flat metrics, as the Hugging Face examples do) and `lmzoo_record.json`
(what the zoo tables are built from: what was trained, on what, for how long, with which result, on which
hardware). The record's fields are defined here and nowhere else: the scripts write records through
`write_run_results`, the sweep writes failure records through `glue_failure_record`, and the zoo and the sweep read
them through `load_record`, which upgrades records of older schema versions and names any field that is missing.
Files are written to a temporary name and renamed into place, so a kill never leaves half a file.

Schema version 2 (version 1 records, written before the field existed, are upgraded on reading):

* both kinds: `schema_version`, `kind` ("pretrain" or "glue"), `status` (completed / failed / diverged),
  `model`, `seed`, `learning_rate`, the batch as four separate fields (`per_device_train_batch_size`,
  `gradient_accumulation_steps`, `world_size`, `effective_batch_size` = their product: the examples per
  optimizer step), `wall_time_s`, `finished_at`, `hardware`.
* pretrain: the model (`model_type`, `config_name`, `parameters`, `embedding_rows`), the tokenizer
  (`tokenizer`: where it came from; `vocab_size`: its actual number of tokens; `vocab_size_requested`: what
  --vocab_size asked for, when a tokenizer was trained), the data (`corpus`, `block_size`, `train_samples`), the
  budget (`steps`, `tokens_seen`), the result (`eval_loss`, `perplexity`, `eval_accuracy`, and what they were
  computed over: `eval_tokens`, `eval_examples`, `perplexity_kind`); with --test_file, the same on the test
  text (`test_loss`, `test_perplexity`, `test_accuracy`, `test_tokens`, `test_examples`).
* glue: `task`, `num_train_epochs`, `dev_metrics` (every dev metric, None where undefined), `undefined_metrics`
  (metric -> why it is undefined), `combined_score` (None when any of its metrics is undefined), `eval_examples`
  (dev split -> examples evaluated).
"""

import contextlib
import json
import math
import os
import platform
import shlex
import shutil
import tempfile
import time
from typing import TypedDict

from .errors import UsageError

RECORD_NAME = "lmzoo_record.json"
ALL_RESULTS_NAME = "all_results.json"
SCHEMA_VERSION = 2
STATUSES = ("completed", "failed", "diverged")
FINISHED_STATUSES = ("completed", "diverged")  # a diverged run would diverge again: rerunning it gains nothing
BATCH_FIELDS = ("per_device_train_batch_size", "gradient_accumulation_steps", "world_size", "effective_batch_size")
# The settings that make a GLUE grid point (with the model's name): runs that share them are seeds of one point.
GLUE_GRID_FIELDS = ("task", "effective_batch_size", "learning_rate", "num_train_epochs")
REQUIRED_FIELDS = {
    "pretrain": ("kind", "status", "model", *BATCH_FIELDS),
    "glue": ("kind", "status", "model", "task", "learning_rate", "num_train_epochs", *BATCH_FIELDS),
}


class BatchRecord(TypedDict):
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    world_size: int
    effective_batch_size: int  # examples per optimizer step: the product of the three above


class RunRecord(BatchRecord, total=False):
    schema_version: int
    kind: str  # "pretrain" or "glue"
    status: str  # one of STATUSES
    model: str
    seed: int
    learning_rate: float
    wall_time_s: float
    finished_at: str
    hardware: dict
    command: str  # what reruns it
    metrics: dict  # the run's all_results.json


class PretrainRecord(RunRecord, total=False):
    script: str
    objective: str
    output_dir: str
    model_type: str
    config_name: str
    config_overrides: str | None
    parameters: int
    embedding_rows: int  # the model's input embedding rows (>= vocab_size)
    vocab_size: int  # the tokenizer's actual number of tokens
    vocab_size_requested: int | None  # --vocab_size (or the preset's) when a tokenizer was trained
    tokenizer: str  # where the tokenizer came from
    tokenizer_fingerprint: str  # a hash of the whole tokenizer: equal fingerprints, the same token ids
    corpus: str
    block_size: int
    packing: str
    train_samples: int | None  # stored training blocks; None with --streaming (a stream has no length)
    streaming: bool
    shuffle_buffer: int | None  # --shuffle_buffer, with --streaming
    steps: int
    tokens_seen: int
    precision: str
    gpu_defaults: dict  # the CUDA defaults applied (lmzoo.gpu_defaults): flag -> value; {} on CPU
    eval_loss: float | None  # mean cross-entropy per evaluated token
    perplexity: float | None  # exp(eval_loss)
    eval_accuracy: float | None
    eval_tokens: int | None  # the tokens eval_loss averages over
    eval_examples: int | None  # the validation blocks they came from
    perplexity_kind: str
    test_loss: float | None  # the same, on --test_file (present only when one was given)
    test_perplexity: float | None
    test_accuracy: float | None
    test_tokens: int | None
    test_examples: int | None
    initial_eval_loss: float | None
    throughput: dict | None
    loss_curve: list
    diverged_at_step: int


class GlueRecord(RunRecord, total=False):
    task: str
    model_path: str
    data: str
    num_train_epochs: float
    max_steps: int
    max_seq_length: int
    pad_to_max_length: bool
    train_sampling_strategy: str
    train_order: str  # what that strategy meant (v2: length groups in shuffled order; before: sorted mega-batches)
    max_train_samples: int | None
    max_eval_samples: int | None
    train_examples: int
    eval_examples: dict  # dev split key ("eval", "eval_mm") -> examples evaluated
    dev_metrics: dict  # "eval_accuracy" ... -> value, None where undefined
    undefined_metrics: dict  # metric key -> why it has no value
    combined_score: float | None
    train_runtime_s: float | None
    output_dir: str
    submission_files: list
    checkpoint_saved: bool
    diverged_at_step: int | None
    exit_code: int  # failures recorded by the sweep
    log: str
    reason: str  # a failure's one line: the run's error line, else the last line of its log
    sweep: dict  # the sweep's bookkeeping: point, name, request, seconds


class RecordError(UsageError):
    """A results record that cannot be read as one: names the file and the field."""


# ------------------------------------------------------------------------------------------------ building records

def batch_fields(per_device: int, accumulation: int = 1, world_size: int = 1) -> BatchRecord:
    per_device, accumulation, world_size = int(per_device), int(accumulation or 1), int(world_size or 1)
    return {"per_device_train_batch_size": per_device, "gradient_accumulation_steps": accumulation,
            "world_size": world_size, "effective_batch_size": per_device * accumulation * world_size}


def batch_fields_of(training_args) -> BatchRecord:
    """The batch of a run from its TrainingArguments (the processes it runs in included)."""
    return batch_fields(training_args.per_device_train_batch_size, training_args.gradient_accumulation_steps,
                        max(1, training_args.world_size))


def finite_or_none(value):
    """NaN and infinities as None (JSON has no NaN; a reader must not take one for a score)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy / torch scalars
        with contextlib.suppress(ValueError, TypeError):
            value = value.item()
    return finite_or_none(value)


def glue_failure_record(written: dict | None, *, task: str, model: str, batch: BatchRecord, learning_rate: float,
                        num_train_epochs: float, seed: int, max_train_samples: int | None, exit_code: int, log: str,
                        command: list[str], wall_time_s: float, reason: str) -> GlueRecord:
    """What the zoo needs to show a GLUE grid point as failed, over whatever the run managed to record."""
    record = upgrade(dict(written)) if written else {}
    record.update(kind="glue", task=task, model=model, **batch, learning_rate=learning_rate,
                  num_train_epochs=num_train_epochs, seed=seed, max_train_samples=max_train_samples,
                  status="diverged" if record.get("status") == "diverged" else "failed", exit_code=exit_code,
                  log=log, reason=reason, command=shlex.join(command), wall_time_s=record.get("wall_time_s", round(wall_time_s, 2)),
                  finished_at=now())
    record.setdefault("hardware", hardware())
    record["schema_version"] = SCHEMA_VERSION
    return record


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ------------------------------------------------------------------------------------------------ writing

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


def share_like_umask(folder: str) -> None:
    """Give the files directly in `folder` that a library wrote owner-only (safetensors writes 0600) the
    permissions the user's umask asks for, so that a shared group can read a checkpoint."""
    mode = 0o666 & ~_umask()
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not os.path.islink(path) and os.stat(path).st_mode & 0o077 == 0:
            os.chmod(path, mode)


@contextlib.contextmanager
def atomic_directory(final_path: str):
    """Yield a temporary folder beside `final_path`; on success it replaces `final_path` in one rename."""
    parent = os.path.dirname(os.path.abspath(final_path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(final_path) + "-")
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it owner-only; caches are meant to be shared
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


def write_record(folder: str, record: dict) -> dict:
    """Validate and write `record` as the folder's results record (stamped with the schema version)."""
    full = _clean({**record, "schema_version": SCHEMA_VERSION})
    full.setdefault("finished_at", now())
    validate(full, os.path.join(folder, RECORD_NAME))
    atomic_write_json(os.path.join(folder, RECORD_NAME), full)
    return full


def write_run_results(output_dir: str, metrics: dict, record: dict) -> dict:
    """Write all_results.json and the results record; returns the record as written."""
    metrics = _clean(dict(metrics))
    full = {**record, "metrics": metrics}
    full.setdefault("hardware", hardware())
    atomic_write_json(os.path.join(output_dir, ALL_RESULTS_NAME), metrics)
    return write_record(output_dir, full)


# ------------------------------------------------------------------------------------------------ reading

def load_record(path: str) -> dict:
    """The record at `path`, upgraded to the current schema and checked; RecordError names what is wrong."""
    try:
        record = read_json(path)
    except (OSError, ValueError) as err:
        raise RecordError(f"{path}: not a readable results record ({err})") from err
    if not isinstance(record, dict):
        raise RecordError(f"{path}: not a results record (a JSON object was expected)")
    record = upgrade(record)
    validate(record, path)
    return record


def validate(record: dict, where: str) -> None:
    version = record.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise RecordError(f"{where}: field 'schema_version' is {version!r}; this lmzoo reads versions up to "
                          f"{SCHEMA_VERSION} (a newer lmzoo wrote it?)")
    kind = record.get("kind")
    if kind not in REQUIRED_FIELDS:
        raise RecordError(f"{where}: field 'kind' is {kind!r}, expected one of {', '.join(REQUIRED_FIELDS)}")
    missing = [name for name in REQUIRED_FIELDS[kind] if record.get(name) is None]
    if missing:
        raise RecordError(f"{where}: {kind} record without field{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(repr(m) for m in missing)}")
    if record["status"] not in STATUSES:
        raise RecordError(f"{where}: field 'status' is {record['status']!r}, expected one of {', '.join(STATUSES)}")


def upgrade(record: dict) -> dict:
    """A record of an older schema version in the current one (unchanged when it is current or newer)."""
    version = record.get("schema_version", 1)
    if not isinstance(version, int) or version >= SCHEMA_VERSION:
        return record
    record = dict(record)
    if record.get("kind") == "glue":
        _upgrade_glue_v1(record)
    elif record.get("kind") == "pretrain":
        _upgrade_pretrain_v1(record)
    record["schema_version"] = SCHEMA_VERSION
    return record


def _v1_world_size(record: dict) -> int:
    return int((record.get("hardware") or {}).get("world_size") or 1)


def _upgrade_glue_v1(record: dict) -> None:
    """v1 GLUE records: `batch_size` was the effective batch in completed records but the per-device batch in the
    sweep's failure records; `per_device_train_batch_size` (in both since the sweep began) is unambiguous."""
    per_device = record.get("per_device_train_batch_size", record.get("batch_size"))
    if per_device is not None and "effective_batch_size" not in record:
        record.update(batch_fields(per_device, record.get("gradient_accumulation_steps", 1), _v1_world_size(record)))
    record.pop("batch_size", None)
    if not record.get("status"):
        record["status"] = "completed" if record.get("combined_score") is not None else "failed"


def _upgrade_pretrain_v1(record: dict) -> None:
    """v1 pretraining records kept only the effective batch (`batch_size`); the per-device batch and the
    accumulation come from the recorded command line where it names them."""
    effective = record.pop("batch_size", None)
    if effective is not None and "effective_batch_size" not in record:
        command = shlex.split(record.get("command") or "")
        world = _v1_world_size(record)
        accumulation = int(_flag_value(command, "--gradient_accumulation_steps") or 1)
        per_device = _flag_value(command, "--per_device_train_batch_size")
        per_device = int(per_device) if per_device else max(1, int(effective) // (accumulation * world))
        record.update(batch_fields(per_device, accumulation, world))
    record.setdefault("status", "completed")
    if "eval_tokens" not in record and record.get("eval_loss") == 0.0:
        record["eval_tokens"] = 0  # v1 wrote loss 0 / perplexity 1 for an evaluation of nothing


def _flag_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None
