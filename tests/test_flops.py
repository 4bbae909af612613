"""MFU's two halves: model FLOPs per token (on meta-device models, no memory) and the peak per exact device name.
Expected values are written out from each architecture's shapes here, not taken from lmzoo."""

import pytest
import torch
from transformers import (BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                          T5Config, T5ForConditionalGeneration)

from lmzoo.flops import flops_per_token, gpu_peak_flops


def on_meta(model_class, config):
    with torch.device("meta"):
        return model_class(config)


def test_gpt2_124m_matches_the_nanogpt_palm_figure():
    model = on_meta(GPT2LMHeadModel, GPT2Config())  # 12 layers, 768 wide, vocabulary 50257, 1024 positions
    assert flops_per_token(model, 1024) == 855_166_464  # 6 x 123,653,376 + 12 x 12 x 768 x 1024
    assert flops_per_token(model, 512) == 6 * 123_653_376 + 12 * 12 * 768 * 512


def bert_mlm_flops(h, layers, vocab, context, head_fraction):
    layer = 4 * h * h + 4 * h + 2 * h * 4 * h + 4 * h + h + 2 * 2 * h  # attention, feed-forward, 2 LayerNorms
    body = layers * layer + 2 * h  # + the embeddings' LayerNorm
    head = h * h + h + 2 * h + vocab * h + vocab  # transform, its LayerNorm, decoder (tied) and its bias
    return 6 * body + 6 * head * head_fraction + 12 * layers * h * context


@pytest.mark.parametrize("head_fraction", [1.0, 0.15])
def test_bert_base_masked_lm(head_fraction):
    model = on_meta(BertForMaskedLM, BertConfig())
    for context in (128, 512):
        assert flops_per_token(model, context, head_fraction) == pytest.approx(
            bert_mlm_flops(768, 12, 30522, context, head_fraction), rel=1e-12)


def test_t5_charges_each_stack_at_its_own_length():
    """t5-small, 512 input / 114 target: the decoder, its output layer and the decoder's attention run on 114
    tokens, the cross attention's keys and values on the 512 encoder outputs."""
    d, ff, inner, layers, vocab, src, tgt = 512, 2048, 512, 6, 32128, 512, 114
    config = T5Config(d_model=d, d_ff=ff, num_layers=layers, num_heads=8, d_kv=64, vocab_size=vocab)
    model = on_meta(T5ForConditionalGeneration, config)
    attention, ffn, norm = 4 * d * inner, 2 * d * ff, d
    encoder = layers * (attention + norm + ffn + norm) + norm
    decoder_at_target = layers * (attention + norm + 2 * d * inner + norm + ffn + norm) + norm
    decoder_at_source = layers * 2 * d * inner  # cross attention k, v
    per_sample = 6 * (encoder * src + decoder_at_target * tgt + decoder_at_source * src + vocab * d * tgt)
    per_sample += 12 * inner * layers * (src * src + tgt * tgt + tgt * src)
    assert flops_per_token(model, src, target_length=tgt) == pytest.approx(per_sample / src, rel=1e-12)
    # charging everything at the input length, as before, overcounts by more than 1.5x
    assert flops_per_token(model, src, target_length=src) > 1.5 * flops_per_token(model, src, target_length=tgt)


def test_other_decoders_count_each_layer_once():
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=4, vocab_size=100, tie_word_embeddings=False)
    model = on_meta(LlamaForCausalLM, config)
    layer = 4 * 64 * 64 + 3 * 64 * 128 + 2 * 64  # q k v o, gate up down, 2 RMSNorms
    body = 3 * layer + 64  # + the final norm
    assert flops_per_token(model, 32) == 6 * (body + 100 * 64) + 12 * 3 * 64 * 32


@pytest.mark.parametrize("name, precision, peak", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989e12),
    ("NVIDIA H100 PCIe", "bf16", 756e12),
    ("NVIDIA H100 NVL", "bf16", 835e12),
    ("NVIDIA H200", "bf16", 989e12),
    ("NVIDIA H100 80GB HBM3", "fp32", 67e12),
    ("NVIDIA A100-SXM4-40GB", "bf16", 312e12),
    ("NVIDIA A100-SXM4-80GB", "tf32", 156e12),
    ("NVIDIA A100 80GB PCIe", "bf16", 312e12),
    ("NVIDIA L4", "bf16", 121e12),
    ("NVIDIA L40S", "bf16", 362e12),
    ("Tesla V100-SXM2-16GB", "fp16", None),
])
def test_peak_by_exact_device_name(name, precision, peak):
    assert gpu_peak_flops(name, precision)[0] == peak
