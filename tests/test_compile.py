"""--torch_compile on CPU with tiny models: the three pretraining scripts train, and the compile cache lands
under --cache_dir (not the system temp folder)."""

import json
import os

import pytest

TINY = {
    "run_mlm.py": ["--config_name", "bert-tiny", "--config_overrides",
                   "num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64"],
    "run_clm.py": ["--config_name", "gpt2", "--config_overrides", "n_layer=1,n_embd=32,n_head=2"],
    "run_t5_span.py": ["--config_name", "t5-small", "--config_overrides",
                       "num_layers=1,num_decoder_layers=1,d_model=32,d_ff=64,num_heads=2,d_kv=16"],
}


@pytest.mark.parametrize("script", list(TINY))
def test_torch_compile_trains_and_caches_under_cache_dir(cli, tmp_path, monkeypatch, script):
    # as a user's shell would have it: no TORCHINDUCTOR_CACHE_DIR of ours
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    cache = tmp_path / "cache"
    code, _, err = cli(script, *TINY[script], "--dataset_name", "demo", "--vocab_size", "800", "--max_seq_length",
                       "64", "--output_dir", tmp_path / "o", "--do_train", "--max_steps", "3", "--torch_compile",
                       "True", "--per_device_train_batch_size", "4", "--disable_tqdm", "True", "--cache_dir", cache)
    assert code == 0, err
    assert json.loads((tmp_path / "o" / "lmzoo_record.json").read_text())["steps"] == 3
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache / "torchinductor")
    assert (cache / "torchinductor").is_dir() and any((cache / "torchinductor").iterdir())
