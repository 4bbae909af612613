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


def test_the_sparse_head_compiles_into_one_graph_without_breaks(tmp_path, monkeypatch):
    """The head's gather is inside the compiled model (a forward pre-hook): fixed-size positions from the collator
    keep it one graph, with no break and no recompile from one batch to the next."""
    import torch
    import torch._dynamo
    from torch._dynamo.utils import counters
    from transformers import AutoModelForMaskedLM, BertConfig

    from lmzoo.collators import MlmCollator
    from lmzoo.objectives import MaskedLmObjective

    class Tokenizer:
        mask_token_id, pad_token_id = 4, 0
        all_special_ids = [0, 1, 2, 3, 4]

        def __len__(self):
            return 100

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                                                        intermediate_size=64, vocab_size=100))
    objective = MaskedLmObjective(model, sparse_head=True)
    compiled = torch.compile(model)
    collator = MlmCollator(Tokenizer(), seed=0, sparse_positions=True)
    for shift in range(3):  # different tokens, different masks, different masked counts
        batch = collator([{"input_ids": [2] + list(range(5 + shift, 35 + shift)) + [3]} for _ in range(4)])
        loss_sum, count = objective.train_loss_sum(compiled, batch)
        (loss_sum / count).backward()
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()
