import json

import pytest

from lmzoo.errors import UsageError
from lmzoo.presets import ALIASES, PRESETS, load_config, max_positions


@pytest.mark.parametrize("name, layers, hidden, heads, intermediate", [
    ("bert-tiny", 2, 128, 2, 512),
    ("bert-mini", 4, 256, 4, 1024),
    ("bert-small", 4, 512, 8, 2048),
    ("bert-medium", 8, 512, 8, 2048),
    ("bert-base", 12, 768, 12, 3072),
])
def test_compact_bert_presets_have_the_published_shapes(name, layers, hidden, heads, intermediate):
    config = load_config(name)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size) == (
        layers, hidden, heads, intermediate)


def test_hub_names_resolve_to_presets_without_download():
    assert load_config("prajjwal1/bert-tiny").hidden_size == 128
    assert load_config("google/bert_uncased_L-4_H-256_A-4").num_hidden_layers == 4
    gpt2 = load_config("openai-community/gpt2")
    assert (gpt2.n_layer, gpt2.n_embd, gpt2.vocab_size) == (12, 768, 50257)
    assert load_config("gpt2-medium").n_layer == 24
    roberta = load_config("roberta-base")
    assert roberta.vocab_size == 50265 and max_positions(roberta) == 512
    assert load_config("distilbert-base-uncased").n_layers == 6
    t5 = load_config("google-t5/t5-small")
    assert (t5.d_model, t5.num_layers, t5.d_ff) == (512, 6, 2048)
    v11 = load_config("google/t5-v1_1-small")
    assert v11.feed_forward_proj == "gated-gelu" and v11.tie_word_embeddings is False
    assert all(target in PRESETS for target in ALIASES.values())


def test_overrides_are_cast_to_the_field_type():
    config = load_config("gpt2", overrides="n_layer=2, n_embd=128,n_head=2,resid_pdrop=0.0")
    assert (config.n_layer, config.n_embd, config.n_head, config.resid_pdrop) == (2, 128, 2, 0.0)
    assert isinstance(config.n_layer, int)


@pytest.mark.parametrize("overrides, culprit", [
    ("num_hidden_layers", "not key=value"),
    ("no_such_field=3", "no_such_field"),
    ("num_hidden_layers=two", "num_hidden_layers=two"),
])
def test_bad_overrides_name_the_culprit(overrides, culprit):
    with pytest.raises(UsageError, match=culprit):
        load_config("bert-tiny", overrides=overrides)


def test_model_type_alone_gives_the_library_default():
    assert load_config(model_type="bert").hidden_size == 768
    with pytest.raises(UsageError, match="not a transformers model type"):
        load_config(model_type="no-such-type")


def test_config_json_and_checkpoint_folder(tmp_path):
    load_config("bert-tiny", overrides="num_hidden_layers=3").save_pretrained(tmp_path)
    assert load_config(str(tmp_path)).num_hidden_layers == 3
    assert load_config(str(tmp_path / "config.json")).num_hidden_layers == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="without config.json"):
        load_config(str(tmp_path / "empty"))


def test_unknown_name_offline_lists_the_presets(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError) as err:
        load_config("someone/unknown-model")
    assert "bert-tiny" in str(err.value) and "someone/unknown-model" in str(err.value)


def test_real_config_files_agree_with_presets(data_dir):
    """The shared folder holds re-saved hub configs of bert-base-uncased and t5-small: same architecture."""
    real = json.loads((data_dir / "tokenizers" / "bert-base-uncased" / "config.json").read_text())
    preset = load_config("bert-base-uncased")
    for key in ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size"):
        assert getattr(preset, key) == real[key]
    real_t5 = json.loads((data_dir / "tokenizers" / "t5-small" / "config.json").read_text())
    t5 = load_config("t5-small")
    for key in ("d_model", "d_ff", "num_layers", "num_heads", "d_kv", "vocab_size"):
        assert getattr(t5, key) == real_t5[key]


def test_gpt2_presets_use_the_fused_tanh_gelu_which_equals_gpt2s_own():
    import torch
    from transformers.activations import ACT2FN

    assert {load_config(name).activation_function for name in ("gpt2", "gpt2-medium", "gpt2-large")} == {
        "gelu_pytorch_tanh"}
    x = torch.linspace(-8, 8, 10_001)
    torch.testing.assert_close(ACT2FN["gelu_pytorch_tanh"](x), ACT2FN["gelu_new"](x), rtol=1e-6, atol=1e-6)
