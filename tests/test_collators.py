import pytest
import torch
from transformers import AutoModelForMaskedLM

from lmzoo.collators import MlmCollator, continuation_table
from lmzoo.presets import load_config
from lmzoo.objectives import MaskedLmObjective
from lmzoo.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def bert_tokenizer(data_dir):
    return load_tokenizer(str(data_dir / "tokenizers" / "bert-base-uncased"))


@pytest.fixture(scope="module")
def blocks(bert_tokenizer, data_dir):
    text = (data_dir / "wikitext-2-raw" / "wiki.valid.raw").read_text()[:200_000]
    ids = bert_tokenizer(text, add_special_tokens=False)["input_ids"]
    body = 126
    n = len(ids) // body
    return [[bert_tokenizer.cls_token_id] + ids[i * body:(i + 1) * body] + [bert_tokenizer.sep_token_id]
            for i in range(n)]


def test_masking_rates_and_80_10_10(bert_tokenizer, blocks):
    collator = MlmCollator(bert_tokenizer, seed=0)
    batch = collator([{"input_ids": b} for b in blocks[:256]])
    original = torch.tensor(blocks[:256])
    masked = batch["labels"] != -100
    assert torch.equal(batch["labels"][masked], original[masked])
    assert not masked[:, 0].any() and not masked[:, -1].any()  # [CLS]/[SEP] never masked
    rate = masked.float().mean().item() * 128 / 126
    assert 0.14 < rate < 0.16
    replaced = batch["input_ids"][masked]
    as_mask = (replaced == bert_tokenizer.mask_token_id).float().mean().item()
    kept = (replaced == original[masked]).float().mean().item()
    assert 0.78 < as_mask < 0.82 and 0.08 < kept < 0.12
    assert torch.equal(batch["input_ids"][~masked], original[~masked])


def test_seeded_and_reproducible(bert_tokenizer, blocks):
    examples = [{"input_ids": b} for b in blocks[:8]]
    first = MlmCollator(bert_tokenizer, seed=3)(examples)
    second = MlmCollator(bert_tokenizer, seed=3)(examples)
    other = MlmCollator(bert_tokenizer, seed=4)(examples)
    assert torch.equal(first["labels"], second["labels"]) and not torch.equal(first["labels"], other["labels"])
    collator = MlmCollator(bert_tokenizer, seed=3)
    collator(examples)
    collator.reset_rng()
    assert torch.equal(collator(examples)["labels"], first["labels"])


def test_whole_word_masking_masks_every_piece_of_a_word(bert_tokenizer, blocks):
    table = continuation_table(bert_tokenizer)
    assert table[bert_tokenizer.convert_tokens_to_ids("##ing")] and not table[bert_tokenizer.convert_tokens_to_ids("the")]
    batch = MlmCollator(bert_tokenizer, whole_word_mask=True, seed=1)([{"input_ids": b} for b in blocks[:64]])
    ids = torch.tensor(blocks[:64])
    masked = batch["labels"] != -100
    continuation = table[ids]
    # a continuation piece is masked exactly when the piece before it is (unless that one is [CLS]: a word cut
    # at the block boundary)
    special = (ids == bert_tokenizer.cls_token_id) | (ids == bert_tokenizer.sep_token_id)
    inner = continuation[:, 1:] & ~special[:, :-1]
    assert torch.equal(masked[:, 1:][inner], masked[:, :-1][inner])
    assert continuation.any() and masked[:, 1:][inner].any()


def test_padding_for_line_by_line(bert_tokenizer):
    batch = MlmCollator(bert_tokenizer, seed=0, pad_to_multiple_of=8)([{"input_ids": [101, 7592, 102]},
                                                                      {"input_ids": [101, 7592, 2088, 999, 102]}])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].tolist()[0] == [1, 1, 1, 0, 0, 0, 0, 0]
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


@pytest.mark.parametrize("preset, overrides", [
    ("bert-tiny", None),
    ("roberta-base", "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,intermediate_size=128"),
    ("distilbert-base", "n_layers=2,dim=64,n_heads=2,hidden_dim=128"),
])
@pytest.mark.parametrize("fixed_size_gather", [True, False])
def test_sparse_head_gives_the_dense_loss_and_gradients(bert_tokenizer, blocks, preset, overrides, fixed_size_gather):
    torch.manual_seed(0)
    config = load_config(preset, overrides=overrides)
    config.vocab_size = len(bert_tokenizer)
    model = AutoModelForMaskedLM.from_config(config)
    model.eval()  # no dropout: the two paths must agree exactly
    batch = MlmCollator(bert_tokenizer, seed=0)([{"input_ids": b} for b in blocks[:4]])
    if preset != "bert-tiny":
        batch.pop("token_type_ids", None)
    dense = model(**batch).loss
    dense.backward()
    dense_grad = model.get_input_embeddings().weight.grad.clone()
    model.zero_grad()
    if fixed_size_gather:  # the collator's padded position list (the same masks: the same seed)
        batch = MlmCollator(bert_tokenizer, seed=0, sparse_positions=True)([{"input_ids": b} for b in blocks[:4]])
        assert batch["masked_positions"].numel() % 64 == 0
        assert batch["masked_positions"].numel() > int((batch["labels"] != -100).sum())  # padding rows present
        if preset != "bert-tiny":
            batch.pop("token_type_ids", None)
    sparse_sum, count = MaskedLmObjective(model, sparse_head=True).train_loss_sum(model, batch)
    (sparse_sum / count).backward()
    assert torch.allclose(sparse_sum / count, dense, rtol=1e-5)
    assert torch.allclose(model.get_input_embeddings().weight.grad, dense_grad, rtol=1e-4, atol=1e-7)
    # the hook is inert outside the sparse call: a plain forward still gives full-vocabulary logits
    plain = {k: v for k, v in batch.items() if k not in ("labels", "masked_positions", "masked_targets")}
    assert model(**plain).logits.shape[:2] == batch["input_ids"].shape


def test_full_blocks_have_no_attention_mask_and_positions_list_the_masked_tokens(bert_tokenizer, blocks):
    batch = MlmCollator(bert_tokenizer, seed=5, sparse_positions=True)([{"input_ids": b} for b in blocks[:8]])
    assert "attention_mask" not in batch  # no padding: an all-ones mask would only slow attention down
    flat = batch["labels"].reshape(-1)
    masked = (flat != -100).nonzero().squeeze(1)
    n = masked.numel()
    assert torch.equal(batch["masked_positions"][:n], masked)  # row-major order, as a boolean selection
    assert torch.equal(batch["masked_targets"][:n], flat[masked])
    assert (batch["masked_targets"][n:] == -100).all() and (batch["masked_positions"][n:] == 0).all()
