"""The Trainer used by the pretraining scripts: token-level evaluation and the sparse masked-LM head.

Evaluation never collects logits: each batch is reduced at once to (summed loss, predicted tokens, correct
tokens), summed over batches and ranks, and reported as eval_loss, eval_perplexity = exp(eval_loss) and
eval_accuracy (masked-token, next-token or target-token accuracy, by objective).

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

# Where the prediction head starts, per model type (the module whose input is the final hidden states).
MLM_HEAD_MODULES = {"bert": "cls", "roberta": "lm_head", "xlm-roberta": "lm_head", "camembert": "lm_head",
                    "distilbert": "vocab_transform", "electra": "generator_predictions"}


class SparseMlmHead:
    """Makes a *ForMaskedLM's head see only the rows selected by `self.rows` (a [batch, seq] bool mask)."""

    def __init__(self, model):
        name = MLM_HEAD_MODULES.get(model.config.model_type)
        self.module = getattr(model, name) if name and hasattr(model, name) else model.get_output_embeddings()
        self.rows = None
        self.handle = self.module.register_forward_pre_hook(self._select_rows)

    def _select_rows(self, module, args):
        if self.rows is None:
            return None
        return (args[0][self.rows],) + tuple(args[1:])

    def outputs(self, model, inputs, **options):
        """The model's outputs with the head run on the positions where labels != -100 only: their logits are
        [n_masked, vocab]; hidden states (with output_hidden_states=True) stay whole."""
        self.rows = inputs["labels"] != -100
        try:
            return model(**{k: v for k, v in inputs.items() if k != "labels"}, **options)
        finally:
            self.rows = None

    def remove(self):
        self.handle.remove()


def masked_forward(model, sparse: SparseMlmHead | None, inputs, **options):
    """(logits at the masked positions, the model's outputs); with `sparse` the head runs on those positions only."""
    if sparse is not None:
        outputs = sparse.outputs(model, inputs, **options)
        return outputs.logits, outputs
    outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, **options)
    return outputs.logits[inputs["labels"] != -100], outputs


class MaskedLmObjective:
    def __init__(self, model, sparse_head: bool = True):
        self.sparse = SparseMlmHead(model) if sparse_head else None

    def masked_logits(self, model, inputs):
        labels = inputs["labels"]
        logits, _ = masked_forward(model, self.sparse, inputs)
        return logits, labels[labels != -100]

    def train_loss_sum(self, model, inputs):
        """(sum of token losses, number of tokens) for a training batch; None means: use the model's own loss."""
        if self.sparse is None:
            return None
        logits, targets = self.masked_logits(model, inputs)
        return F.cross_entropy(logits.float(), targets, reduction="sum"), targets.numel()

    def eval_stats(self, model, inputs):
        logits, targets = self.masked_logits(model, inputs)
        return _stats(logits, targets)


class CausalLmObjective:
    """Next-token prediction; evaluation applies the output layer to chunks of positions, never all at once."""

    chunk_tokens = 8192

    def train_loss_sum(self, model, inputs):
        return None

    def eval_stats(self, model, inputs):
        labels = inputs["labels"]
        features = {k: v for k, v in inputs.items() if k != "labels"}
        hidden = model.base_model(**features).last_hidden_state[:, :-1].reshape(-1, model.config.hidden_size)
        targets = labels[:, 1:].reshape(-1)
        keep = targets != -100
        hidden, targets = hidden[keep], targets[keep]
        head = model.get_output_embeddings()
        totals = [0.0, 0, 0]
        for start in range(0, targets.numel(), self.chunk_tokens):
            part = _stats(head(hidden[start:start + self.chunk_tokens]), targets[start:start + self.chunk_tokens])
            totals = [a + b for a, b in zip(totals, part)]
        return tuple(totals)


class Seq2SeqObjective:
    """Encoder-decoder targets (T5 span corruption): the target sequences are short, logits per batch are fine."""

    def train_loss_sum(self, model, inputs):
        return None

    def eval_stats(self, model, inputs):
        logits = model(**inputs).logits
        labels = inputs["labels"]
        keep = labels != -100
        return _stats(logits[keep], labels[keep])


def _stats(logits: torch.Tensor, targets: torch.Tensor):
    loss_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
    correct = (logits.argmax(dim=-1) == targets).sum()
    return loss_sum.item(), targets.numel(), correct.item()


class GuardedTrainer(Trainer):
    """Trainer that shows every step's loss to its DivergenceGuard callback, if it has one: every step, so that
    no checkpoint of a diverged model is saved."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard = next((c for c in self.callback_handler.callbacks if isinstance(c, DivergenceGuard)), None)

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

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        own = None if return_outputs else self.objective.train_loss_sum(model, inputs)
        if own is None:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        loss_sum, count = own
        if num_items_in_batch is None or not self.model_accepts_loss_kwargs:
            return loss_sum / max(count, 1)
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
        with torch.no_grad():
            for inputs in dataloader:
                inputs = self._prepare_inputs(inputs)
                with self.autocast_smart_context_manager():
                    loss_sum, count, correct = self.objective.eval_stats(model, inputs)
                totals += torch.tensor([loss_sum, count, correct], dtype=torch.float64, device=self.args.device)
        if self.accelerator.num_processes > 1:
            totals = self.accelerator.reduce(totals, reduction="sum")
        if was_training:
            model.train()
        loss_sum, count, correct = totals.tolist()
        loss = loss_sum / max(count, 1)
        metrics = {
            f"{metric_key_prefix}_loss": loss,
            f"{metric_key_prefix}_perplexity": math.exp(min(loss, 50.0)),
            f"{metric_key_prefix}_accuracy": correct / max(count, 1),
            f"{metric_key_prefix}_tokens": int(count),
        }
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
