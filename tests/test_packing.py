"""--packing documents: a packed block gives every document the logits it gets when run alone."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

from lmzoo.collators import CausalLmCollator, MlmCollator
from lmzoo.data import BlockLayout, pack_documents
from lmzoo.presets import load_config

DOCS = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [14, 15, 16, 17, 18, 19, 20, 21]]


def test_position_ids_restart_at_documents_and_blocks():
    blocks, positions = pack_documents(DOCS, BlockLayout(8, prefix_ids=(1,), suffix_ids=(2,), separator_id=2))
    assert blocks.tolist()[0] == [1, 5, 6, 7, 2, 1, 8, 9]
    assert positions.tolist()[0] == [0, 1, 2, 3, 4, 0, 1, 2]
    assert positions.tolist()[1][:7] == [0, 0, 1, 2, 3, 4, 5]  # a document cut by the block edge restarts too
    causal, pos = pack_documents(DOCS, BlockLayout(6, separator_id=0))
    assert causal.tolist()[0] == [5, 6, 7, 0, 8, 9] and pos.tolist()[0] == [0, 1, 2, 3, 0, 1]


def run_alone(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_packed_logits_equal_each_document_alone(family):
    torch.manual_seed(0)
    if family == "bert":
        config = load_config("bert-tiny", overrides="vocab_size=40,hidden_dropout_prob=0.0,attention_probs_dropout_prob=0.0")
        model = AutoModelForMaskedLM.from_config(config).eval()
        layout = BlockLayout(16, prefix_ids=(1,), suffix_ids=(2,), separator_id=2)
    else:
        config = load_config("gpt2", overrides="n_layer=2,n_embd=32,n_head=2,vocab_size=40")
        model = AutoModelForCausalLM.from_config(config).eval()
        layout = BlockLayout(16, separator_id=0)
    docs = DOCS[:3]  # 3 documents that fit in one block, followed by the start of a fourth
    blocks, positions = pack_documents(DOCS, layout)
    example = {"input_ids": blocks[0].tolist(), "position_ids": positions[0].tolist()}
    if family == "bert":
        batch = MlmCollator(_FakeTokenizer(), mlm_probability=1e-9, seed=0)([example])
    else:
        batch = CausalLmCollator(pad_id=0)([example])
    batch.pop("labels")
    with torch.no_grad():
        packed = model(**batch).logits[0]
    start = 0
    for doc in docs:
        alone_ids = list(layout.prefix_ids) + doc + (list(layout.suffix_ids) or [layout.separator_id])
        alone = run_alone(model, alone_ids)
        assert torch.allclose(packed[start:start + len(alone_ids)], alone, atol=1e-5), family
        start += len(alone_ids)
    # and without the document mask the logits would differ: the test can fail
    with torch.no_grad():
        crossing = model(input_ids=batch["input_ids"]).logits[0]
    assert not torch.allclose(crossing[start - 3:start], packed[start - 3:start], atol=1e-5)


class _FakeTokenizer:
    """Just what MlmCollator needs, for a 40-token vocabulary with [MASK] = 3."""
    mask_token_id = 3
    pad_token_id = 0
    all_special_ids = [0, 1, 2, 3]

    def __len__(self):
        return 40


@pytest.mark.parametrize("script, preset, overrides", [
    ("run_mlm.py", "bert-tiny", "num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64"),
    ("run_clm.py", "gpt2", "n_layer=1,n_embd=32,n_head=2"),
])
def test_scripts_train_with_document_packing(cli, data_dir, tmp_path, script, preset, overrides):
    code, _, err = cli(script, "--config_name", preset, "--config_overrides", overrides, "--packing", "documents",
                       "--train_file", data_dir / "tinyshakespeare" / "input.txt", "--vocab_size", "600",
                       "--max_seq_length", "64", "--max_eval_samples", "16", "--output_dir", tmp_path / "o",
                       "--do_train", "--do_eval", "--max_steps", "5", "--disable_tqdm", "True")
    assert code == 0, err
    import json

    record = json.loads((tmp_path / "o" / "lmzoo_record.json").read_text())
    assert record["status"] == "completed" and record["eval_loss"] < record["initial_eval_loss"] + 0.5
