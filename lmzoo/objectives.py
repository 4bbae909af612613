"""The pretraining objectives: what a training batch's loss is, and what an evaluation batch scores.

Each objective gives `train_loss_sum(model, inputs)` (a summed token loss and its token count, or None for the
model's own loss) and `eval_stats(model, inputs)` (per example: summed token loss, tokens scored, tokens predicted
right), which lmzoo.trainer.LmTrainer reduces and gathers. Masked LM, causal LM and seq2seq (T5 span corruption).

Sparse MLM head: the masked-LM prediction head (a hidden x vocabulary matmul, most of a small BERT's step) runs
only on the masked positions. A forward pre-hook on the head module gathers those rows of its input, so the
model stays a standard *ForMaskedLM (same parameters, same checkpoint) and the forward still goes through the
DDP/compile wrapper. The positions come from the collator as a fixed-size list (lmzoo.collators), so the gather
never makes the CPU wait for the device. The loss is the same cross-entropy, over the same tokens, with the same
normalisation as the dense head.
"""

import torch
import torch.nn.functional as F

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
