"""Preparing once (--prepare_only), then training on the prepared caches only (--require_cache): multi-node jobs."""

import json

import pytest

pytestmark = pytest.mark.usefixtures("data_dir")


def mlm_args(data_dir, cache, *extra):
    corpus = data_dir / "wikitext-2-raw"
    return ["--config_name", "bert-tiny", "--vocab_size", "2000", "--train_file", corpus / "wiki.valid.raw",
            "--validation_file", corpus / "wiki.test.raw", "--max_seq_length", "64", "--cache_dir", cache, *extra]


def train_args(out):
    return ["--do_train", "--do_eval", "--max_steps", "3", "--per_device_train_batch_size", "8",
            "--max_eval_samples", "32", "--seed", "1", "--output_dir", out]


def test_prepare_only_builds_the_caches_and_require_cache_trains_on_them_without_building(cli, data_dir, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "run"
    code, _, err = cli("run_mlm.py", *mlm_args(data_dir, cache, "--prepare_only", "--output_dir", out))
    assert code == 0, err
    assert not out.exists()  # preparing neither writes nor holds --output_dir
    assert len(list((cache / "tokenizers").glob("bert-wordpiece-2000-*/tokenizer_config.json"))) == 1
    (shards,) = (cache / "tokenized").glob("mlm-64-*/data/shards.json")
    assert set(json.loads(shards.read_text())) == {"train", "validation"}
    summary = next(line for line in err.splitlines() if line.startswith("[lmzoo] tokenized "))
    assert " documents (" in summary and " MB/s); peak RSS " in summary and "x the text)" in summary

    code, _, err = cli("run_mlm.py", *mlm_args(data_dir, cache, "--require_cache", *train_args(out)))
    assert code == 0, err
    assert "building" not in err  # used as prepared
    assert json.loads((out / "lmzoo_record.json").read_text())["status"] == "completed"


def test_require_cache_without_a_prepared_cache_is_one_line_before_any_work(cli, data_dir, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "run"
    code, _, err = cli("run_mlm.py", *mlm_args(data_dir, cache, "--require_cache", *train_args(out)))
    assert code == 2
    (line,) = err.strip().splitlines()[-1:]
    assert line.startswith("run_mlm.py: error: --require_cache: a wordpiece tokenizer (up to 2000 tokens) trained on "
                           f"the corpus is not built in {cache / 'tokenizers'}")
    assert line.endswith("; build it first with the same command and --prepare_only")
    assert not (cache / "tokenizers").exists() and not (cache / "tokenized").exists()
    assert not out.exists() or not any(out.iterdir())

    tokenizer = data_dir / "tokenizers" / "bert-base-uncased"  # a named tokenizer: the blocks are what is missing
    code, _, err = cli("run_mlm.py", *mlm_args(data_dir, cache, "--require_cache", "--tokenizer_name", tokenizer,
                                               *train_args(out)))
    assert code == 2
    assert "--require_cache: tokenized mlm blocks of 64 tokens (blocks packing) is not built in " in err


def test_prepare_only_and_require_cache_together_are_refused(cli, data_dir, tmp_path):
    code, _, err = cli("run_mlm.py", *mlm_args(data_dir, tmp_path / "cache", "--prepare_only", "--require_cache"))
    assert code == 2 and "--prepare_only builds the caches that --require_cache refuses to build" in err
