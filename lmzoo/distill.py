"""Masked-LM distillation as in DistilBERT (Sanh et al. 2019): a student learns from a frozen teacher's soft
targets on the same masked batches.

Per training batch, with s / t the student's / teacher's logits at the masked positions and T the temperature:

    loss = alpha_ce  * T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over masked positions
         + alpha_mlm * cross-entropy of s against the masked tokens, averaged over masked positions
         + alpha_cos * (1 - cos(student, teacher last hidden state)), averaged over non-padding positions

which is DistilBERT's KLDivLoss(batchmean) on the masked rows, its masked-LM loss and its CosineEmbeddingLoss with
target 1. The logits are only needed at the masked positions, so both heads run sparse (lmzoo.objectives'
SparseMlmHead); the cosine term needs the hidden states, which exist at every position anyway. It applies when
the student and the teacher have the same hidden size and is left out otherwise.

The teacher is not part of the Trainer's model: it is never wrapped by DDP or saved, it runs under no_grad in
eval mode, and it is moved to the training device on the first batch. Accelerate applies mixed precision by
wrapping the student's forward, not compute_loss, so the teacher gets its own autocast of the same precision.

`--init_student_from_teacher` starts the student from every other teacher layer (0, 2, 4, ...), the embeddings
and the MLM head, as DistilBERT did; for the same model type and for a BERT teacher -> DistilBERT student.
"""

import contextlib
import logging
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AutoModelForMaskedLM, TrainerCallback

from .flops import flops_per_token
from .args import DistillationArguments
from .checkpoints import check_model_folder
from .errors import UsageError, require
from .plan import continues_checkpoint
from .presets import max_positions
from .tokenizer import load_tokenizer
from .objectives import MLM_HEAD_MODULES, MaskedLmObjective, SparseMlmHead, masked_forward

logger = logging.getLogger("lmzoo")

# Any text that tells apart two tokenizers with the same vocabulary but different normalisation (casing, accents).
PROBE_TEXT = "Distillation: Café au lait, 1984 -- the Teacher's STUDENT!"
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------------------------------------- the teacher

@dataclass
class Teacher:
    model: object
    tokenizer: object
    path: str


def load_teacher(path: str, cache_dir: str | None = None) -> Teacher:
    """The frozen teacher and its tokenizer, or a one-line error naming the folder."""
    check_model_folder(path, "--teacher_name_or_path")
    try:
        model = AutoModelForMaskedLM.from_pretrained(path, cache_dir=cache_dir)
    except (OSError, ValueError) as err:
        raise UsageError(f"--teacher_name_or_path {path}: cannot load a masked-LM checkpoint "
                         f"({str(err).splitlines()[0][:200]})") from err
    require(model.config.model_type in MLM_HEAD_MODULES,
            f"--teacher_name_or_path {path}: a '{model.config.model_type}' teacher is not supported "
            f"({', '.join(MLM_HEAD_MODULES)})")
    try:
        tokenizer = load_tokenizer(path, cache_dir)
    except UsageError as err:
        raise UsageError(f"--teacher_name_or_path {path} holds no usable tokenizer, and the student's must be "
                         f"checked against it ({err})") from err
    model.eval()
    model.requires_grad_(False)
    return Teacher(model, tokenizer, path)


def prepare_teacher(distill_args: DistillationArguments, model_args, cache_dir: str | None = None) -> Teacher:
    """Load the teacher and check it against the student's flags."""
    teacher = load_teacher(distill_args.teacher_name_or_path, cache_dir)
    require(not (distill_args.init_student_from_teacher and continues_checkpoint(model_args)),
            f"--init_student_from_teacher builds the student from the teacher; it contradicts --model_name_or_path "
            f"{model_args.model_name_or_path} (a checkpoint to continue)")
    return teacher


def student_plan_options(teacher: Teacher, model_args) -> dict:
    """What the student's plan (lmzoo.plan.plan_model) takes from its teacher: a fresh student uses the teacher's
    tokenizer unless --tokenizer_name says otherwise, and the teacher's vocabulary size unless --config_overrides
    names one (its logits are compared with the teacher's token by token)."""
    if continues_checkpoint(model_args):
        return {}
    options = {"tokenizer_name": model_args.tokenizer_name or teacher.path}
    if "vocab_size" not in (model_args.config_overrides or ""):
        options["vocab_size"] = teacher.model.config.vocab_size
    return options


def check_student_fits_teacher(teacher: Teacher, plan) -> None:
    """Same vocabulary, same vocabulary size, enough positions: checked on the student's plan."""
    check_same_tokenizer(plan.tokenizer, plan.tokenizer_source, teacher)
    teacher_vocab = teacher.model.config.vocab_size
    require(plan.config.vocab_size == teacher_vocab,
            f"the student's vocab_size {plan.config.vocab_size} differs from the teacher's {teacher_vocab} "
            f"({teacher.path}); distillation needs the same vocabulary")
    positions = max_positions(teacher.model.config)
    require(positions is None or plan.block <= positions,
            f"blocks of {plan.block} tokens exceed the teacher's {positions} positions ({teacher.path}); "
            f"use --max_seq_length <= {positions}")


def check_same_tokenizer(tokenizer, source: str, teacher: Teacher) -> None:
    """Refuse, in one line, a student tokenizer (from `source`) that is not the teacher's."""
    difference = vocabulary_difference(tokenizer, teacher.tokenizer)
    if difference is None and tokenizer(PROBE_TEXT)["input_ids"] != teacher.tokenizer(PROBE_TEXT)["input_ids"]:
        difference = f"they split {PROBE_TEXT!r} differently"
    if difference is not None:
        raise UsageError(f"tokenizer {source} is not the teacher's ({teacher.path}): {difference}; distillation "
                         "needs the teacher's vocabulary (leave out --tokenizer_name to use it)")


def vocabulary_difference(student_tokenizer, teacher_tokenizer) -> str | None:
    """A short description of the first difference between two vocabularies, or None when they are equal."""
    student, teacher = student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    if student == teacher:
        return None
    if len(student) != len(teacher):
        return f"{len(student)} tokens against the teacher's {len(teacher)}"
    token = next(t for t in sorted(teacher) if student.get(t) != teacher[t])
    return f"token {token!r} has id {student.get(token)} against the teacher's {teacher[token]}"


def teacher_forward_flops(teacher_model, block: int, mlm_probability: float) -> float:
    """The teacher's forward FLOPs per trained token (a third of its forward + backward), head on masked rows."""
    return flops_per_token(teacher_model, block, head_fraction=mlm_probability) / 3


# ---------------------------------------------------------------------------------------------- student init

# The layer number in a parameter name: "encoder.layer.N." (BERT, RoBERTa), "transformer.layer.N." (DistilBERT).
LAYER_INDEX = re.compile(r"\.layer\.(\d+)\.")

# DistilBERT module <- BERT module, inside a layer and outside the layers.
DISTILBERT_LAYER_FROM_BERT = {
    "attention.q_lin": "attention.self.query",
    "attention.k_lin": "attention.self.key",
    "attention.v_lin": "attention.self.value",
    "attention.out_lin": "attention.output.dense",
    "sa_layer_norm": "attention.output.LayerNorm",
    "ffn.lin1": "intermediate.dense",
    "ffn.lin2": "output.dense",
    "output_layer_norm": "output.LayerNorm",
}
DISTILBERT_FROM_BERT = {
    "distilbert.embeddings.word_embeddings": "bert.embeddings.word_embeddings",
    "distilbert.embeddings.position_embeddings": "bert.embeddings.position_embeddings",
    "distilbert.embeddings.LayerNorm": "bert.embeddings.LayerNorm",
    "vocab_transform": "cls.predictions.transform.dense",
    "vocab_layer_norm": "cls.predictions.transform.LayerNorm",
    "vocab_projector": "cls.predictions.decoder",
}


def every_other_layer(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layers 0, 2, 4, ... for student layers 0, 1, 2, ..."""
    chosen = list(range(0, 2 * student_layers, 2))
    require(chosen[-1] < teacher_layers,
            f"--init_student_from_teacher: a {student_layers}-layer student takes teacher layers 0, 2, ..., "
            f"{chosen[-1]}, but the teacher has {teacher_layers} layers (it needs at least {chosen[-1] + 1})")
    return chosen


def student_state_from_teacher(student, teacher) -> tuple[dict, list[int]]:
    """The student's whole state dict taken from the teacher, and the teacher layers used."""
    s_config, t_config = student.config, teacher.config
    pair = f"{t_config.model_type} -> {s_config.model_type}"
    for what in ("hidden_size", "num_attention_heads", "vocab_size"):
        require(getattr(s_config, what) == getattr(t_config, what),
                f"--init_student_from_teacher: the student's {what} {getattr(s_config, what)} differs from the "
                f"teacher's {getattr(t_config, what)}; the teacher's weights do not fit")
    layers = every_other_layer(s_config.num_hidden_layers, t_config.num_hidden_layers)
    student_shapes = {name: value.shape for name, value in student.state_dict().items()}
    bert_to_distilbert = (t_config.model_type, s_config.model_type) == ("bert", "distilbert")
    if s_config.model_type == t_config.model_type:
        source = {name: _renumber_layer(name, layers) for name in student_shapes}
    elif bert_to_distilbert:
        source = {name: _bert_name_for_distilbert(name, layers) for name in student_shapes}
    else:
        raise UsageError(f"--init_student_from_teacher maps a teacher to a student of its own model type or a BERT "
                         f"teacher to a DistilBERT student, not {pair}")
    teacher_state = teacher.state_dict()
    state = {}
    for name, teacher_name in source.items():
        require(teacher_name in teacher_state,
                f"--init_student_from_teacher ({pair}): the teacher has no '{teacher_name}' for the student's '{name}'")
        value = teacher_state[teacher_name]
        require(value.shape == student_shapes[name],
                f"--init_student_from_teacher ({pair}): the teacher's {teacher_name} is {tuple(value.shape)}, the "
                f"student's {name} is {tuple(student_shapes[name])}")
        state[name] = value.clone()
    if bert_to_distilbert:
        # DistilBERT has no segment embeddings; BERT adds segment 0's to every token of a one-segment block.
        state["distilbert.embeddings.position_embeddings.weight"] += (
            teacher_state["bert.embeddings.token_type_embeddings.weight"][0])
    return state, layers


def init_student_from_teacher(student, teacher) -> list[int]:
    """Copy the teacher's weights into the student (see student_state_from_teacher); returns the layers used."""
    state, layers = student_state_from_teacher(student, teacher)
    student.load_state_dict(state)
    logger.info("student initialised from teacher layers %s", layers)
    return layers


def _renumber_layer(name: str, layers: list[int]) -> str:
    return LAYER_INDEX.sub(lambda m: f".layer.{layers[int(m.group(1))]}.", name)


def _bert_name_for_distilbert(name: str, layers: list[int]) -> str:
    """The BERT parameter a DistilBERT parameter is copied from."""
    module, _, kind = name.rpartition(".")
    in_layer = re.fullmatch(r"distilbert\.transformer\.layer\.(\d+)\.(.+)", module)
    if in_layer:
        index, part = in_layer.groups()
        return f"bert.encoder.layer.{layers[int(index)]}.{DISTILBERT_LAYER_FROM_BERT.get(part, part)}.{kind}"
    return f"{DISTILBERT_FROM_BERT.get(module, module)}.{kind}"


# ---------------------------------------------------------------------------------------------- the loss

def soft_target_kl_sum(student_logits, teacher_logits, temperature: float, rows=None) -> torch.Tensor:
    """Sum over rows (those where `rows` is True, when given) of T^2 * KL(softmax(teacher/T) || softmax(student/T)):
    DistilBERT's loss_ce before batchmean."""
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits.float() / temperature, dim=-1)
    per_row = F.kl_div(log_p_student, p_teacher, reduction="none").sum(dim=-1)
    if rows is not None:
        per_row = per_row * rows  # padding rows of the fixed-size gather count for nothing
    return per_row.sum() * temperature**2


def hidden_cosine_loss(student_hidden, teacher_hidden, attention_mask) -> torch.Tensor:
    """Mean of 1 - cos(student, teacher) over the non-padding positions (weighted, not selected: no host sync)."""
    real = attention_mask.float()
    cosine = F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1)
    return ((1 - cosine) * real).sum() / real.sum().clamp_min(1)


def masked_logits_and_hidden(model, sparse: SparseMlmHead | None, inputs, with_hidden: bool):
    """(logits at the masked positions, their targets (-100: padding), last hidden states or None)."""
    logits, targets, _, outputs = masked_forward(model, sparse, inputs,
                                                 **({"output_hidden_states": True} if with_hidden else {}))
    return logits, targets, outputs.hidden_states[-1] if with_hidden else None


class DistillationObjective(MaskedLmObjective):
    """The DistilBERT loss for training; evaluation is the student's masked-LM loss, as for any MLM run."""

    def __init__(self, student, teacher, args: DistillationArguments, sparse_head: bool = True,
                 precision: str = "fp32"):
        super().__init__(student, sparse_head=sparse_head)
        self.teacher = teacher
        self.teacher_head = SparseMlmHead(teacher)
        self.args = args
        self.autocast_dtype = AUTOCAST_DTYPES.get(precision)
        self.use_cosine = args.alpha_cos > 0 and student.config.hidden_size == teacher.config.hidden_size
        if args.alpha_cos > 0 and not self.use_cosine:
            logger.warning("no cosine loss: the student's hidden size %d differs from the teacher's %d",
                           student.config.hidden_size, teacher.config.hidden_size)
        self.terms_log = LossTermsLog(("loss_ce", "loss_mlm") + (("loss_cos",) if self.use_cosine else ()))

    loss_is_token_sum_normalised = True  # train_loss_sum always gives our own summed loss

    def record(self) -> dict:
        """What the results record says about the distillation."""
        return {**self.args.record(), "cosine_loss": self.use_cosine}

    def train_loss_sum(self, model, inputs):
        """(weighted loss summed over the masked tokens, their number); the per-batch terms go to the logs."""
        loss_sum, count, terms = self.loss_terms(model, inputs)
        self.terms_log.add(terms)
        return loss_sum, count

    def loss_terms(self, model, inputs):
        """(loss sum, masked tokens, {term: its batch mean}), the sum such that sum / count is
        alpha_ce * loss_ce + alpha_mlm * loss_mlm + alpha_cos * loss_cos."""
        student_logits, targets, student_hidden = masked_logits_and_hidden(model, self.sparse, inputs,
                                                                           self.use_cosine)
        teacher_logits, _, teacher_hidden = self.teacher_outputs(inputs)
        scored = targets != -100
        count = scored.sum()  # a device tensor: no wait for the device
        kl_sum = soft_target_kl_sum(student_logits, teacher_logits, self.args.temperature, scored)
        mlm_sum = F.cross_entropy(student_logits.float(), targets, reduction="sum")
        terms = {"loss_ce": kl_sum / count.clamp_min(1), "loss_mlm": mlm_sum / count.clamp_min(1)}
        loss_sum = self.args.alpha_ce * kl_sum + self.args.alpha_mlm * mlm_sum
        if self.use_cosine:
            terms["loss_cos"] = hidden_cosine_loss(student_hidden, teacher_hidden, attention_mask_of(inputs))
            loss_sum = loss_sum + self.args.alpha_cos * terms["loss_cos"] * count  # a mean over positions, weighted
        return loss_sum, count, terms

    def teacher_outputs(self, inputs):
        """The teacher's masked-row logits and last hidden states, without gradients, in the run's precision."""
        device = inputs["input_ids"].device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        autocast = (torch.autocast(device.type, dtype=self.autocast_dtype) if self.autocast_dtype is not None
                    else contextlib.nullcontext())
        with torch.no_grad(), autocast:
            return masked_logits_and_hidden(self.teacher, self.teacher_head, inputs, self.use_cosine)


def attention_mask_of(inputs):
    mask = inputs.get("attention_mask")
    return mask if mask is not None else torch.ones_like(inputs["input_ids"])


class LossTermsLog(TrainerCallback):
    """Averages each loss term over the logging window (and the ranks) and adds it to the training logs."""

    def __init__(self, names):
        self.names = tuple(names)
        self.sums = None
        self.batches = 0

    def add(self, terms: dict) -> None:
        values = torch.stack([terms[name].detach().float() for name in self.names])
        self.sums = values if self.sums is None else self.sums + values  # stays on the device: no sync per step
        self.batches += 1

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs or self.sums is None:
            return
        means = self.sums / self.batches
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(means)  # every rank logs at the same steps
            means = means / torch.distributed.get_world_size()
        values = {name: round(value, 4) for name, value in zip(self.names, means.tolist())}
        logs.update(values)
        if state.log_history and state.log_history[-1].get("loss") == logs["loss"]:
            state.log_history[-1].update(values)  # the Trainer copied `logs` into the history before calling us
        self.sums, self.batches = None, 0
