"""The Trainer used by the pretraining scripts: token-level evaluation and the sparse masked-LM head.

Evaluation never collects logits: each batch is reduced at once to one row per example (summed token loss,
scored tokens, correct tokens), the rows of all ranks are gathered with accelerate's `gather_for_metrics` (which
drops the examples the distributed sampler repeats to give every rank the same number of batches), and summed in
float64. Reported: eval_loss = summed loss / scored tokens (the mean cross-entropy per token, in nats),
eval_perplexity = exp(eval_loss), eval_accuracy (masked-token, next-token or target-token accuracy, by objective),
eval_tokens and eval_examples (what the mean is over). An evaluation that scores no token is an error, never a
loss of 0.

Sparse MLM head: the masked-LM prediction head (a hidden x vocabulary matmul, most of a small BERT's step) runs
only on the masked positions. A forward pre-hook on the head module gathers the masked rows of its input, so the
model stays a standard *ForMaskedLM (same parameters, same checkpoint) and the forward still goes through the
DDP/compile wrapper. The loss is the same cross-entropy, over the same tokens, with the same normalisation as the
dense head.
"""

import math

import torch
import torch.nn.functional as F
from transformers import Trainer

from .callbacks import DivergenceGuard
from .checkpoints import CheckpointSeal, CheckpointSpaceCheck
from .errors import UsageError

# Where the prediction head starts, per model type (the module whose input is the final hidden states).
MLM_HEAD_MODULES = {"bert": "cls", "roberta": "lm_head", "xlm-roberta": "lm_head", "camembert": "lm_head",
                    "distilbert": "vocab_transform", "electra": "generator_predictions"}


# What the MLM collator adds for the sparse head (lmzoo.collators.masked_positions); never given to the model.
POSITION_KEYS = ("masked_positions", "masked_targets")


def model_inputs(inputs: dict) -> dict:
    return {k: v for k, v in inputs.items() if k != "labels" and k not in POSITION_KEYS}


def positions_and_targets(inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat indices of the masked tokens, their labels): the collator's fixed-size lists when it made them (no
    host sync), else found from the labels (a boolean selection: the CPU waits for the device)."""
    if "masked_positions" in inputs:
        return inputs["masked_positions"], inputs["masked_targets"]
    flat = inputs["labels"].reshape(-1)
    positions = (flat != -100).nonzero().squeeze(1)
    return positions, flat.index_select(0, positions)


class SparseMlmHead:
    """Makes a *ForMaskedLM's head see only the rows at `self.positions` (flat indices into [batch x seq])."""

    def __init__(self, model):
        name = MLM_HEAD_MODULES.get(model.config.model_type)
        self.module = getattr(model, name) if name and hasattr(model, name) else model.get_output_embeddings()
        self.positions = None
        self.handle = self.module.register_forward_pre_hook(self._select_rows)

    def _select_rows(self, module, args):
        if self.positions is None:
            return None
        hidden = args[0]
        return (hidden.reshape(-1, hidden.shape[-1]).index_select(0, self.positions),) + tuple(args[1:])

    def outputs(self, model, inputs, positions, **options):
        """The model's outputs with the head run on `positions` only: logits are [len(positions), vocab]; hidden
        states (with output_hidden_states=True) stay whole."""
        self.positions = positions
        try:
            return model(**model_inputs(inputs), **options)
        finally:
            self.positions = None

    def remove(self):
        self.handle.remove()


def masked_forward(model, sparse: SparseMlmHead | None, inputs, **options):
    """(logits at the masked positions, their targets (-100: a padding row), the masked positions, the model's
    outputs); with `sparse` the head runs on those positions only."""
    positions, targets = positions_and_targets(inputs)
    if sparse is not None:
        outputs = sparse.outputs(model, inputs, positions, **options)
        return outputs.logits, targets, positions, outputs
    outputs = model(**model_inputs(inputs), **options)
    logits = outputs.logits
    return logits.reshape(-1, logits.shape[-1]).index_select(0, positions), targets, positions, outputs


class MaskedLmObjective:
    def __init__(self, model, sparse_head: bool = True):
        self.sparse = SparseMlmHead(model) if sparse_head else None

    @property
    def loss_is_token_sum_normalised(self) -> bool:
        """Our own loss (sparse head) is divided by the step's token count; *ForMaskedLM's own is a batch mean."""
        return self.sparse is not None

    def train_loss_sum(self, model, inputs):
        """(sum of token losses, number of tokens: a device tensor) for a training batch; None: the model's own."""
        if self.sparse is None:
            return None
        logits, targets, _, _ = masked_forward(model, self.sparse, inputs)
        return F.cross_entropy(logits.float(), targets, reduction="sum"), (targets != -100).sum()

    def eval_stats(self, model, inputs):
        logits, targets, positions, _ = masked_forward(model, self.sparse, inputs)
        rows = positions // inputs["labels"].shape[1]
        return _row_stats(logits, targets, rows, inputs["labels"].shape[0])


class CausalLmObjective:
    """Next-token prediction; evaluation applies the output layer to chunks of positions, never all at once."""

    chunk_tokens = 8192
    loss_is_token_sum_normalised = None  # the model's own loss: transformers' causal-LM loss uses num_items_in_batch

    def train_loss_sum(self, model, inputs):
        return None

    def eval_stats(self, model, inputs):
        labels = inputs["labels"]
        features = {k: v for k, v in inputs.items() if k != "labels"}
        hidden = model.base_model(**features).last_hidden_state[:, :-1].reshape(-1, model.config.hidden_size)
        targets = labels[:, 1:].reshape(-1)
        rows = torch.arange(labels.shape[0], device=labels.device).repeat_interleave(labels.shape[1] - 1)
        keep = targets != -100
        hidden, targets, rows = hidden[keep], targets[keep], rows[keep]
        head = model.get_output_embeddings()
        totals = torch.zeros(labels.shape[0], 3, dtype=torch.float64, device=labels.device)
        for start in range(0, targets.numel(), self.chunk_tokens):
            part = slice(start, start + self.chunk_tokens)
            totals += _row_stats(head(hidden[part]), targets[part], rows[part], labels.shape[0])
        return totals


class Seq2SeqObjective:
    """Encoder-decoder targets (T5 span corruption): the target sequences are short, logits per batch are fine."""

    loss_is_token_sum_normalised = False  # T5ForConditionalGeneration's loss is a batch mean

    def train_loss_sum(self, model, inputs):
        return None

    def eval_stats(self, model, inputs):
        logits = model(**inputs).logits
        labels = inputs["labels"]
        keep = labels != -100
        return _row_stats(logits[keep], labels[keep], keep.nonzero()[:, 0], labels.shape[0])


def _row_stats(logits: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """[n_rows, 3] float64: per example, the summed token loss, the tokens scored and the tokens predicted right.
    `rows[i]` is the example that token i (a row of `logits`) belongs to; a target of -100 (padding) counts for
    nothing. Stays on the device until gathered."""
    scored = targets != -100
    losses = F.cross_entropy(logits.float(), targets, reduction="none").double()  # 0 where ignored
    correct = ((logits.argmax(dim=-1) == targets) & scored).double()
    stats = torch.zeros(n_rows, 3, dtype=torch.float64, device=logits.device)
    stats[:, 0].index_add_(0, rows, losses)
    stats[:, 1].index_add_(0, rows, scored.double())
    stats[:, 2].index_add_(0, rows, correct)
    return stats


class EmptyEvaluationError(UsageError):
    """The evaluation set held no token to score: there is no loss to report (and never a loss of 0)."""


class GuardedTrainer(Trainer):
    """Trainer that shows every step's loss to its DivergenceGuard callback, if it has one: every step, so that
    no checkpoint of a diverged model is saved; and seals every checkpoint it writes (lmzoo.checkpoints)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard = next((c for c in self.callback_handler.callbacks if isinstance(c, DivergenceGuard)), None)
        self.add_callback(CheckpointSeal())  # a checkpoint cut short or damaged is never resumed
        self.add_callback(CheckpointSpaceCheck(self.model))  # room for a checkpoint is checked before it is written

    def loss_is_a_batch_mean(self) -> None:
        """Say that the model's loss is a mean over its own batch, whatever its forward signature says.

        transformers (checked: 5.24) takes any model whose forward has **kwargs for one whose loss is divided by
        `num_items_in_batch`, the tokens of the whole optimizer step on all ranks. It then multiplies the loss by
        the number of processes (training gradients, and eval_loss too: transformers#35078) and skips the division
        by the gradient-accumulation steps. Sequence-classification heads, T5 and the dense *ForMaskedLM heads
        return a plain batch mean: under torchrun their eval_loss came out x2 and their gradients x world size,
        and with accumulation x the steps. Turning the detection off gives them the usual mean-of-means."""
        self.model_accepts_loss_kwargs = False

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.guard is not None:
            self.guard.observe(loss, self.state.global_step + 1)
        return loss


class LmTrainer(GuardedTrainer):
    """Trainer with an objective that owns the training loss (when it has its own) and token-level evaluation."""

    def __init__(self, *args, objective=None, eval_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.eval_collator = eval_collator  # its own seeded masks, so evaluation does not disturb training's
        if objective.loss_is_token_sum_normalised is False:
            self.loss_is_a_batch_mean()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        own = None if return_outputs else self.objective.train_loss_sum(model, inputs)
        if own is None:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        loss_sum, count = own
        if num_items_in_batch is None or not self.model_accepts_loss_kwargs:
            return loss_sum / count.clamp_min(1)  # a device tensor: no wait for the device
        loss = loss_sum / num_items_in_batch
        if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients over ranks; undo that
        return loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        train_collator = self.data_collator
        if self.eval_collator is not None:
            self.data_collator = self.eval_collator
        try:
            dataloader = self.get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator
        if hasattr(self.eval_collator, "reset_rng"):
            self.eval_collator.reset_rng()  # the same masks/spans at every evaluation: comparable numbers
        model = self.model
        was_training = model.training
        model.eval()
        totals = torch.zeros(3, dtype=torch.float64, device=self.args.device)
        examples = 0
        with torch.no_grad():
            for inputs in dataloader:
                inputs = self._prepare_inputs(inputs)
                with self.autocast_smart_context_manager():
                    per_example = self.objective.eval_stats(model, inputs)
                # every rank's rows, without the repeats that pad the last batches (accelerate knows how many)
                per_example = self.accelerator.gather_for_metrics(per_example)
                totals += per_example.sum(dim=0)
                examples += per_example.shape[0]
        if was_training:
            model.train()
        loss_sum, count, correct = totals.tolist()
        if count == 0:
            raise EmptyEvaluationError(f"the validation set gave no token to score ({examples} examples): no eval_loss "
                                       "to report; give a longer --validation_file or a larger --max_eval_samples")
        loss = loss_sum / count
        metrics = {
            f"{metric_key_prefix}_loss": loss,
            f"{metric_key_prefix}_perplexity": math.exp(min(loss, 50.0)),
            f"{metric_key_prefix}_accuracy": correct / count,
            f"{metric_key_prefix}_tokens": int(count),
            f"{metric_key_prefix}_examples": examples,
        }
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
