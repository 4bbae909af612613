"""Distillation (lmzoo.distill, run_mlm.py --teacher_name_or_path): the loss terms against hand computation, the
teacher's precision and frozen weights, student initialisation from the teacher, tokenizer checks, end to end."""

import json
import math

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM, DistilBertConfig, \
    DistilBertForMaskedLM

from lmzoo.collators import masked_positions
from lmzoo.corpus import load_demo
from lmzoo.distill import DistillationArguments, DistillationObjective, init_student_from_teacher
from lmzoo.errors import UsageError
from lmzoo.tokenizer import train_tokenizer

VOCAB = 64
STUDENT = "num_hidden_layers=2,hidden_size=32,num_attention_heads=2,intermediate_size=64,max_position_embeddings=64"


def tiny_bert(layers: int, hidden: int = 32, seed: int = 0, vocab: int = VOCAB) -> BertForMaskedLM:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab, num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=64)
    return BertForMaskedLM(config).eval()  # eval: no dropout, so two forwards agree


def tiny_distilbert(layers: int, seed: int = 1) -> DistilBertForMaskedLM:
    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=VOCAB, n_layers=layers, dim=32, n_heads=2, hidden_dim=64,
                              max_position_embeddings=64)
    return DistilBertForMaskedLM(config).eval()


def tiny_batch():
    """Two rows, the second padded; five masked positions."""
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(5, VOCAB, (2, 10), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0
    labels = torch.full_like(input_ids, -100)
    for row, col in [(0, 1), (0, 4), (0, 8), (1, 2), (1, 5)]:
        labels[row, col] = input_ids[row, col]
        input_ids[row, col] = 4  # the "mask" token
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def distill_args(**changes) -> DistillationArguments:
    values = dict(teacher_name_or_path="teacher", alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)
    return DistillationArguments(**{**values, **changes})


# ------------------------------------------------------------------------------------------- the loss terms

@pytest.mark.parametrize("sparse_head, collator_positions", [(True, False), (True, True), (False, False),
                                                             (False, True)])
def test_loss_terms_match_a_hand_computation(sparse_head, collator_positions):
    student, teacher, batch = tiny_bert(2, seed=1), tiny_bert(3, seed=2), tiny_batch()
    objective = DistillationObjective(student, teacher, distill_args(), sparse_head=sparse_head)
    with_positions = dict(batch)
    if collator_positions:  # the fixed-size gather the collator prepares: 64 rows, 59 of them padding
        with_positions["masked_positions"], with_positions["masked_targets"] = masked_positions(batch["labels"])
        assert with_positions["masked_positions"].numel() == 64
    loss_sum, count, terms = objective.loss_terms(student, with_positions)

    features = {k: v for k, v in batch.items() if k != "labels"}
    s_out = student(**features, output_hidden_states=True)
    with torch.no_grad():
        t_out = teacher(**features, output_hidden_states=True)
    masked = batch["labels"] != -100
    s, t, targets, T = s_out.logits[masked], t_out.logits[masked], batch["labels"][masked], 2.0
    p_teacher = torch.softmax(t / T, dim=-1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(s / T, dim=-1))).sum(dim=-1).mean() * T**2
    ce = -torch.log_softmax(s, dim=-1).gather(1, targets[:, None]).mean()
    real = batch["attention_mask"].bool()
    a, b = s_out.hidden_states[-1][real], t_out.hidden_states[-1][real]
    cos = (1 - (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).mean()

    assert count == 5 and real.sum() == 17
    torch.testing.assert_close(terms["loss_ce"], kl)
    torch.testing.assert_close(terms["loss_mlm"], ce)
    torch.testing.assert_close(terms["loss_cos"], cos)
    torch.testing.assert_close(loss_sum / count, 5 * kl + 2 * ce + 1 * cos)
    assert kl > 0 and cos > 0  # two different random models: a real test, not 0 == 0


def test_no_cosine_term_when_hidden_sizes_differ():
    student, teacher = tiny_bert(2, hidden=16, seed=1), tiny_bert(3, seed=2)
    objective = DistillationObjective(student, teacher, distill_args(alpha_ce=0.0, alpha_mlm=1.0))
    loss_sum, count, terms = objective.loss_terms(student, tiny_batch())
    assert set(terms) == {"loss_ce", "loss_mlm"} and objective.record()["cosine_loss"] is False
    torch.testing.assert_close(loss_sum / count, terms["loss_mlm"])


def test_teacher_runs_frozen_under_the_runs_autocast_and_only_the_student_learns():
    student, teacher = tiny_bert(2, seed=1), tiny_bert(3, seed=2)
    teacher.requires_grad_(False)
    seen = []
    teacher.cls.predictions.decoder.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    objective = DistillationObjective(student, teacher, distill_args(), precision="bf16")
    loss_sum, _ = objective.train_loss_sum(student, tiny_batch())
    loss_sum.backward()
    assert seen == [torch.bfloat16]
    assert all(p.grad is None for p in teacher.parameters())
    assert student.bert.encoder.layer[0].attention.self.query.weight.grad is not None
    assert objective.terms_log.batches == 1


# ------------------------------------------------------------------------------------------- student init

def test_bert_student_takes_every_other_teacher_layer():
    teacher, student = tiny_bert(5, seed=2), tiny_bert(3, seed=1)
    assert init_student_from_teacher(student, teacher) == [0, 2, 4]
    for i, j in enumerate([0, 2, 4]):
        for (name, s), (_, t) in zip(student.bert.encoder.layer[i].named_parameters(),
                                     teacher.bert.encoder.layer[j].named_parameters()):
            assert torch.equal(s, t), (i, j, name)
    for name, t in teacher.named_parameters():
        if ".layer." not in name:
            assert torch.equal(student.get_parameter(name), t), name
    assert student.cls.predictions.decoder.weight is student.bert.embeddings.word_embeddings.weight  # still tied


def test_distilbert_student_from_a_bert_teacher_computes_the_same_function():
    """A one-layer DistilBERT built from a one-layer BERT is the same network: every parameter mapped."""
    teacher, student = tiny_bert(1, seed=2), tiny_distilbert(1)
    init_student_from_teacher(student, teacher)
    batch = tiny_batch()
    features = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    torch.testing.assert_close(student(**features).logits, teacher(**features).logits)

    teacher, student = tiny_bert(3, seed=2), tiny_distilbert(2)
    assert init_student_from_teacher(student, teacher) == [0, 2]
    assert torch.equal(student.distilbert.transformer.layer[1].ffn.lin1.weight,
                       teacher.bert.encoder.layer[2].intermediate.dense.weight)


@pytest.mark.parametrize("student, teacher, culprit", [
    (lambda: tiny_bert(2, hidden=64), lambda: tiny_bert(4), "hidden_size 64 differs from the teacher's 32"),
    (lambda: tiny_bert(3), lambda: tiny_bert(4), "the teacher has 4 layers (it needs at least 5)"),
    (lambda: tiny_bert(2, vocab=80), lambda: tiny_bert(4), "vocab_size 80"),
    (lambda: tiny_bert(1), lambda: tiny_distilbert(2), "not distilbert -> bert"),
])
def test_init_refuses_what_does_not_fit(student, teacher, culprit):
    with pytest.raises(UsageError, match=culprit.replace("(", r"\(").replace(")", r"\)")):
        init_student_from_teacher(student(), teacher())


# ------------------------------------------------------------------------------------------- run_mlm.py

@pytest.fixture(scope="module")
def demo_docs():
    return load_demo()["train"].select(range(200))


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, demo_docs):
    """A small random BERT masked-LM checkpoint with a WordPiece tokenizer trained on demo text."""
    folder = tmp_path_factory.mktemp("teacher")
    tokenizer = train_tokenizer("bert", demo_docs, "text", 400)
    tokenizer.save_pretrained(folder)
    teacher = tiny_bert(3, seed=2, vocab=len(tokenizer))
    teacher.save_pretrained(folder)
    return folder


def run_args(teacher_dir, out, *extra):
    return ["--teacher_name_or_path", teacher_dir, "--config_name", "bert-tiny", "--config_overrides", STUDENT,
            "--dataset_name", "demo", "--max_seq_length", "32", "--max_eval_samples", "16",
            "--output_dir", out, "--do_train", "--do_eval", "--per_device_train_batch_size", "8",
            "--max_steps", "6", "--logging_steps", "2", "--disable_tqdm", "True", "--seed", "7", *extra]


def test_a_tokenizer_other_than_the_teachers_is_refused_in_one_line(cli, teacher_dir, demo_docs, tmp_path):
    other = tmp_path / "other-tokenizer"
    train_tokenizer("bert", demo_docs, "text", 300).save_pretrained(other)
    code, _, err = cli("run_mlm.py", *run_args(teacher_dir, tmp_path / "run", "--tokenizer_name", other))
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and "Traceback" not in err, err
    assert len(errors) == 1 and "other-tokenizer is not the teacher's" in errors[0], err
    assert str(teacher_dir) in errors[0] and "tokens against the teacher's" in errors[0]
    assert not (tmp_path / "run" / "lmzoo_record.json").exists()


@pytest.mark.parametrize("extra, culprit", [
    (["--temperature", "0"], "--temperature must be > 0"),
    (["--alpha_ce", "-1"], "--alpha_ce must be >= 0"),
    (["--teacher_name_or_path", "{tmp}/nothing-here"], "nothing-here: cannot load"),
    (["--config_overrides", STUDENT.replace("num_hidden_layers=2", "num_hidden_layers=3"),
      "--init_student_from_teacher"], "it needs at least 5"),
    (["--config_overrides", STUDENT + ",vocab_size=1000"], "the student's vocab_size 1000 differs from the teacher's"),
    (["--init_student_from_teacher", "--teacher_name_or_path", ""], "--init_student_from_teacher needs"),
])
def test_bad_distillation_flags(cli, teacher_dir, tmp_path, extra, culprit):
    extra = [e.format(tmp=tmp_path) for e in extra]
    code, _, err = cli("run_mlm.py", *run_args(teacher_dir, tmp_path / "run", *extra))
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1 and culprit in errors[0], err


def test_distils_a_loadable_student_and_records_the_teacher(cli, teacher_dir, tmp_path):
    out = tmp_path / "student"
    code, stdout, err = cli("run_mlm.py", *run_args(teacher_dir, out, "--init_student_from_teacher"))
    assert code == 0, err
    record = json.loads((out / "lmzoo_record.json").read_text())
    assert record["teacher"] == str(teacher_dir) and record["init_student_from_teacher"] is True
    assert (record["alpha_ce"], record["alpha_mlm"], record["alpha_cos"], record["temperature"]) == (5, 2, 1, 2)
    assert record["objective"].startswith("distillation") and record["cosine_loss"] is True
    assert record["steps"] == 6 and math.isfinite(record["eval_loss"])

    student = AutoModelForMaskedLM.from_pretrained(out)
    assert type(student).__name__ == "BertForMaskedLM" and student.config.num_hidden_layers == 2
    assert AutoTokenizer.from_pretrained(out).get_vocab() == AutoTokenizer.from_pretrained(teacher_dir).get_vocab()

    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "loss" in entry]
    assert len(logged) == 3
    for entry in logged:  # the logged loss is the weighted sum of the logged terms (same window, same batches)
        weighted = 5 * entry["loss_ce"] + 2 * entry["loss_mlm"] + 1 * entry["loss_cos"]
        assert math.isclose(entry["loss"], weighted, rel_tol=1e-3, abs_tol=1e-3), entry
