import json
from types import SimpleNamespace

import pytest
from transformers import T5ForConditionalGeneration

from lmzoo.errors import UsageError
from run_t5_span import SpanArguments, check_precision

TINY_T5 = "num_layers=2,num_decoder_layers=2,d_model=64,d_ff=128,num_heads=2,d_kv=32"


def test_t5_span_pretraining_learns_and_saves_a_t5(cli, data_dir, tmp_path):
    out = tmp_path / "t5"
    code, _, err = cli("run_t5_span.py", "--config_name", "t5-small", "--config_overrides", TINY_T5,
                       "--train_file", data_dir / "wikitext-2-raw" / "wiki.valid.raw",
                       "--validation_file", data_dir / "wikitext-2-raw" / "wiki.test.raw",
                       "--vocab_size", "1500", "--max_seq_length", "64", "--max_eval_samples", "32",
                       "--output_dir", out, "--do_train", "--do_eval", "--max_steps", "60",
                       "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--disable_tqdm", "True")
    assert code == 0, err
    record = json.loads((out / "lmzoo_record.json").read_text())
    assert (record["raw_length"], record["target_length"]) == (70, 14)  # 64 = 70 - 10 noise + 3 sentinels + EOS
    assert record["eval_loss"] < record["initial_eval_loss"] - 1.5
    assert 0 < record["eval_accuracy"] < 1
    model = T5ForConditionalGeneration.from_pretrained(out)
    assert model.config.num_layers == 2 and model.config.decoder_start_token_id == model.config.pad_token_id


def test_fp16_is_refused_for_t5_unless_allowed():
    asked = SimpleNamespace(fp16=True, auto_precision=None)
    with pytest.raises(UsageError, match="--fp16 with T5 overflows"):
        check_precision(asked, SpanArguments())
    check_precision(asked, SpanArguments(allow_fp16=True))
    assert asked.fp16
    auto = SimpleNamespace(fp16=True, auto_precision="fp16")  # a GPU without bf16: fall back to fp32
    check_precision(auto, SpanArguments())
    assert auto.fp16 is False


def logged_losses(out):
    state = json.loads((out / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def test_gradient_accumulation_gives_the_loss_of_the_whole_batch(cli, data_dir, tmp_path):
    """T5's loss is a batch mean: with 2 accumulation steps of 4 it must be divided by 2, as transformers does for
    such losses, not left whole as for token-normalised ones (it was logged, and back-propagated, x2)."""
    def run(out, per_device, accumulation):
        code, _, err = cli("run_t5_span.py", "--config_name", "t5-small",
                           "--config_overrides", TINY_T5 + ",dropout_rate=0.0",
                           "--train_file", data_dir / "wikitext-2-raw" / "wiki.valid.raw", "--vocab_size", "1500",
                           "--max_seq_length", "64", "--output_dir", out, "--do_train", "--max_steps", "3",
                           "--per_device_train_batch_size", per_device, "--gradient_accumulation_steps", accumulation,
                           "--logging_steps", "1", "--learning_rate", "3e-3", "--disable_tqdm", "True")
        assert code == 0, err
        return logged_losses(out)

    whole, accumulated = run(tmp_path / "whole", 8, 1), run(tmp_path / "accumulated", 4, 2)
    assert len(whole) == len(accumulated) == 3
    # the same examples, but each collator call draws its own spans: a few percent apart, not a factor of 2
    assert all(abs(a - b) < 0.1 * a for a, b in zip(whole, accumulated)), (whole, accumulated)
