"""The Trainer used by the pretraining scripts: an objective's loss, token-level evaluation, the divergence guard.

Evaluation never collects logits: each batch is reduced at once to one row per example (summed token loss,
scored tokens, correct tokens), the rows of all ranks are gathered with accelerate's `gather_for_metrics` (which
drops the examples the distributed sampler repeats to give every rank the same number of batches), and summed in
float64. Reported: eval_loss = summed loss / scored tokens (the mean cross-entropy per token, in nats),
eval_perplexity = exp(eval_loss), eval_accuracy (masked-token, next-token or target-token accuracy, by objective),
eval_tokens and eval_examples (what the mean is over). An evaluation that scores no token is an error, never a
loss of 0.

The objectives themselves (masked LM with the sparse head, causal LM, seq2seq) are in lmzoo.objectives.
"""

import math

import torch
from transformers import Trainer

from .callbacks import DivergenceGuard
from .checkpoints import CheckpointSeal, CheckpointSpaceCheck
from .errors import UsageError
from .streaming import BlockStream, StreamStateSaver, prepare_trainer_for_stream

class EmptyEvaluationError(UsageError):
    """The evaluation set held no token to score: there is no loss to report (and never a loss of 0)."""


class GuardedTrainer(Trainer):
    """Trainer that shows every step's loss to its DivergenceGuard callback, if it has one: every step, so that
    no checkpoint of a diverged model is saved; and seals every checkpoint it writes (lmzoo.checkpoints)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard = next((c for c in self.callback_handler.callbacks if isinstance(c, DivergenceGuard)), None)
        self.stream = self.train_dataset if isinstance(self.train_dataset, BlockStream) else None
        if self.stream is not None:  # --streaming: its position goes into each checkpoint, before the seal
            prepare_trainer_for_stream(self.args, self.stream)
            self.add_callback(StreamStateSaver(self.stream))
        self.add_callback(CheckpointSeal())  # a checkpoint cut short or damaged is never resumed
        self.add_callback(CheckpointSpaceCheck(self.model))  # room for a checkpoint is checked before it is written

    def train(self, resume_from_checkpoint=None, **kwargs):
        if self.stream is not None and resume_from_checkpoint:
            if resume_from_checkpoint is True:
                from transformers.trainer_utils import get_last_checkpoint

                resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            self.stream.load_state(resume_from_checkpoint)  # the stream seeks; the Trainer skips no batch
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def get_train_dataloader(self):
        loader = super().get_train_dataloader()
        if self.stream is not None:
            # torch's DataLoader draws a seed from the global RNG at every iter() (checked: torch 2.13), which a
            # stream does not use. The Trainer restores the checkpoint's RNG state before that draw when it skips
            # no batches, so a resumed run's dropout would be one draw off: the loader gets a generator of its own.
            base = getattr(loader, "base_dataloader", loader)  # accelerate's wrapper (checked: accelerate 1.16)
            base.generator = torch.Generator().manual_seed(self.stream.seed)
        return loader

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
