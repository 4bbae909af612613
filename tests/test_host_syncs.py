"""No host synchronisation per training step from lmzoo's own code.

On a GPU, reading a tensor on the host (`.item()`, `bool(t)`, `int(t)`, `.tolist()`, `.nonzero()`, a boolean-mask
selection, whose result size depends on the data) makes the CPU wait until the GPU has caught up, so the next
step's kernels cannot be queued in advance. These tests record every such call whose caller is a module of the
lmzoo package during a short CPU training run and allow only the divergence guard's read at logging steps. (The
collators run on the CPU, in the data loader, before the batch reaches the device: they are not counted.)
"""

import sys
from pathlib import Path

import pytest
import torch

import lmzoo

LMZOO_DIR = Path(lmzoo.__file__).resolve().parent
DATA_LOADER_SIDE = {"collators.py", "t5_span.py", "data.py"}
SYNCING_METHODS = ("item", "tolist", "__bool__", "__int__", "__float__", "nonzero")


@pytest.fixture
def host_syncs(monkeypatch):
    """A list that fills with (method, file, function) for every syncing call made from lmzoo's code."""
    calls = []

    def ours(depth: int = 2):
        frame = sys._getframe(depth)
        path = Path(frame.f_code.co_filename).resolve()
        if path.parent == LMZOO_DIR and path.name not in DATA_LOADER_SIDE:
            return path.name, frame.f_code.co_name
        return None

    def counting(name, original):
        def wrapper(self, *args, **kwargs):
            where = ours()
            if where:
                calls.append((name, *where))
            return original(self, *args, **kwargs)
        return wrapper

    for name in SYNCING_METHODS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    getitem = torch.Tensor.__getitem__

    def boolean_selection(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            where = ours()
            if where:
                calls.append(("boolean selection", *where))
        return getitem(self, index)

    monkeypatch.setattr(torch.Tensor, "__getitem__", boolean_selection)
    return calls


def test_masked_lm_training_steps_do_not_wait_for_the_device(cli, data_dir, tmp_path, host_syncs):
    steps, logging_steps = 30, 10
    code, _, err = cli("run_mlm.py", "--config_name", "bert-tiny", "--config_overrides",
                       "num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64",
                       "--train_file", data_dir / "wikitext-2-raw" / "wiki.valid.raw",
                       "--validation_file", data_dir / "wikitext-2-raw" / "wiki.test.raw",
                       "--tokenizer_name", data_dir / "tokenizers" / "bert-base-uncased", "--max_seq_length", "64",
                       "--output_dir", tmp_path / "run", "--do_train", "--max_steps", str(steps),
                       "--per_device_train_batch_size", "8", "--logging_steps", str(logging_steps),
                       "--save_strategy", "no", "--disable_tqdm", "True", "--cache_dir", tmp_path / "cache")
    assert code == 0, err
    in_training = [c for c in host_syncs if c[1] in ("trainer.py", "distill.py", "callbacks.py")]
    # the guard reads its flag once per logging step (and once more when the run asks for it at the end)
    assert all(c[1:] == ("callbacks.py", "diverged_at_step") for c in in_training), in_training
    assert len(in_training) <= steps // logging_steps + 2, in_training


def test_distillation_loss_terms_do_not_wait_for_the_device(host_syncs):
    from transformers import BertConfig, BertForMaskedLM

    from lmzoo.collators import masked_positions
    from lmzoo.distill import DistillationArguments, DistillationObjective

    def tiny(seed):
        torch.manual_seed(seed)
        return BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=32, max_position_embeddings=32))

    student, teacher = tiny(1), tiny(2)
    input_ids = torch.randint(5, 50, (2, 12))
    labels = torch.full_like(input_ids, -100)
    labels[0, 3], labels[1, 7] = input_ids[0, 3], input_ids[1, 7]
    batch = {"input_ids": input_ids, "labels": labels}
    batch["masked_positions"], batch["masked_targets"] = masked_positions(labels)
    host_syncs.clear()  # masked_positions is the collator's (CPU) work
    args = DistillationArguments(teacher_name_or_path="t", alpha_ce=1.0, alpha_mlm=1.0, alpha_cos=1.0)
    loss_sum, count, _ = DistillationObjective(student, teacher, args).loss_terms(student, batch)
    (loss_sum / count).backward()
    assert host_syncs == []
