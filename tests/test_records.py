"""The results record schema (lmzoo.records): one writer, one reader, upgrades of version-1 records."""

import json
import math

import pytest

from lmzoo import records
from lmzoo.records import RECORD_NAME, RecordError, batch_fields, load_record, write_record


def write_json(folder, record):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD_NAME).write_text(json.dumps(record))
    return folder / RECORD_NAME


V1_GLUE_COMPLETED = {"kind": "glue", "task": "rte", "model": "minilm", "batch_size": 64,
                     "per_device_train_batch_size": 16, "gradient_accumulation_steps": 2, "learning_rate": 5e-5,
                     "num_train_epochs": 3.0, "seed": 42, "combined_score": 0.6,
                     "hardware": {"world_size": 2}}
V1_GLUE_FAILED = {"kind": "glue", "task": "rte", "model": "minilm", "batch_size": 16,
                  "per_device_train_batch_size": 16, "learning_rate": 5e-5, "num_train_epochs": 3.0, "seed": 42,
                  "status": "failed", "exit_code": 1}


def test_version_1_batch_sizes_become_four_unambiguous_fields(tmp_path):
    """v1 `batch_size` was the effective batch when completed but the per-device batch when failed."""
    completed = load_record(write_json(tmp_path / "a", V1_GLUE_COMPLETED))
    failed = load_record(write_json(tmp_path / "b", V1_GLUE_FAILED))
    assert {k: completed[k] for k in records.BATCH_FIELDS} == {
        "per_device_train_batch_size": 16, "gradient_accumulation_steps": 2, "world_size": 2,
        "effective_batch_size": 64}
    assert failed["effective_batch_size"] == 16 and failed["status"] == "failed"
    assert completed["status"] == "completed" and completed["schema_version"] == records.SCHEMA_VERSION
    assert "batch_size" not in completed and "batch_size" not in failed


def test_version_1_pretraining_records_take_the_batch_from_their_command(tmp_path):
    v1 = {"kind": "pretrain", "status": "completed", "model": "bert-tiny", "batch_size": 64, "eval_loss": 6.9,
          "command": "python run_mlm.py --per_device_train_batch_size 16 --gradient_accumulation_steps 2",
          "hardware": {"world_size": 2}}
    record = load_record(write_json(tmp_path / "p", v1))
    assert (record["per_device_train_batch_size"], record["gradient_accumulation_steps"], record["world_size"],
            record["effective_batch_size"]) == (16, 2, 2, 64)
    assert "eval_tokens" not in record  # not known: never invented
    empty = load_record(write_json(tmp_path / "e", {**v1, "eval_loss": 0.0, "perplexity": 1.0}))
    assert empty["eval_tokens"] == 0  # v1's sign of an evaluation of nothing


@pytest.mark.parametrize("change, message", [
    ({"task": None}, "glue record without field 'task'"),
    ({"kind": "sweep"}, "field 'kind' is 'sweep'"),
    ({"status": "done"}, "field 'status' is 'done'"),
    ({"schema_version": 99}, "field 'schema_version' is 99"),
])
def test_a_record_that_cannot_be_read_names_the_field(tmp_path, change, message):
    path = write_json(tmp_path, {**V1_GLUE_COMPLETED, **change})
    with pytest.raises(RecordError, match=message) as error:
        load_record(path)
    assert str(path) in str(error.value)


def test_unreadable_json_names_the_file(tmp_path):
    (tmp_path / RECORD_NAME).write_text('{"kind": "gl')
    with pytest.raises(RecordError, match="not a readable results record"):
        load_record(tmp_path / RECORD_NAME)


def test_the_writer_stamps_the_version_refuses_missing_fields_and_never_writes_nan(tmp_path):
    record = {"kind": "glue", "status": "completed", "model": "minilm", "task": "stsb", "learning_rate": 5e-5,
              "num_train_epochs": 1.0, **batch_fields(32), "combined_score": float("nan"),
              "dev_metrics": {"eval_pearson": float("nan"), "eval_loss": 1.5}}
    written = write_record(tmp_path, record)
    text = (tmp_path / RECORD_NAME).read_text()
    assert "NaN" not in text and json.loads(text) == written
    assert written["schema_version"] == records.SCHEMA_VERSION and written["combined_score"] is None
    assert written["dev_metrics"] == {"eval_pearson": None, "eval_loss": 1.5}
    with pytest.raises(RecordError, match="without field 'task'"):
        write_record(tmp_path / "other", {**record, "task": None})
    assert not (tmp_path / "other" / RECORD_NAME).exists()


def test_batch_fields_multiply_out():
    assert batch_fields(8, 4, 2) == {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 4,
                                     "world_size": 2, "effective_batch_size": 64}
    assert records.finite_or_none(math.inf) is None and records.finite_or_none(0.5) == 0.5
