"""Attention gets what lets a fused kernel run: with full blocks from lmzoo's collators, GPT-2 asks SDPA for its
causal kernel with no mask at all, and BERT gets no mask (a materialised mask rules out the flash kernel)."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, BertConfig, GPT2Config

from lmzoo.collators import CausalLmCollator, MlmCollator


@pytest.fixture
def sdpa_calls(monkeypatch):
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def recording(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        calls.append({"mask": attn_mask is not None, "is_causal": is_causal})
        return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    return calls


class FakeTokenizer:
    mask_token_id, pad_token_id, cls_token_id, sep_token_id = 4, 0, 2, 3
    all_special_ids = [0, 1, 2, 3, 4]

    def __len__(self):
        return 100


def test_gpt2_uses_the_causal_kernel_without_a_mask(sdpa_calls):
    model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100))
    assert model.config._attn_implementation == "sdpa"
    batch = CausalLmCollator(pad_id=0)([{"input_ids": list(range(5, 37))} for _ in range(3)])
    assert "attention_mask" not in batch
    model(**batch).loss.backward()
    assert sdpa_calls and all(c == {"mask": False, "is_causal": True} for c in sdpa_calls), sdpa_calls


def test_bert_gets_no_mask_for_full_blocks(sdpa_calls):
    model = AutoModelForMaskedLM.from_config(BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                                                        intermediate_size=64, vocab_size=100))
    batch = MlmCollator(FakeTokenizer(), seed=0)([{"input_ids": [2] + list(range(5, 35)) + [3]} for _ in range(3)])
    model(**batch).loss.backward()
    assert sdpa_calls and all(c == {"mask": False, "is_causal": False} for c in sdpa_calls), sdpa_calls
