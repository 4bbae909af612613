"""Masked-LM batches: 80/10/10 masking, optional whole-word masking, seeded and vectorised.

Why not transformers' DataCollatorForLanguageModeling: in transformers 5 its whole-word masking needs offset
mappings, which packed blocks do not have. Here word boundaries come from the vocabulary itself (a WordPiece
piece starting with `##`, or a byte-level BPE / SentencePiece piece not starting with `Ġ` / `▁`, continues the
previous word), so whole-word masking works on packed blocks with a table look-up and a cumulative max.
(T5 span corruption lives in lmzoo.t5_span.)
"""

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np
import torch


def continuation_table(tokenizer) -> torch.Tensor:
    """Boolean per token id: does this piece continue the previous word?"""
    table = torch.zeros(len(tokenizer), dtype=torch.bool)
    specials = set(tokenizer.all_special_ids)
    vocab = tokenizer.get_vocab()
    word_starts = ("Ġ", "▁")
    uses_word_start_marker = any(piece.startswith(word_starts) for piece in list(vocab)[:5000])
    for piece, index in vocab.items():
        if index in specials or index >= len(table):
            continue
        if piece.startswith("##"):
            table[index] = True
        elif uses_word_start_marker and not piece.startswith(word_starts) and piece.isalnum():
            table[index] = True
    return table


def example_seed(seed: int, token_ids) -> int:
    """A 63-bit seed from `seed` and an example's tokens: the same example gets the same seed wherever it is."""
    data = np.asarray(token_ids.tolist() if hasattr(token_ids, "tolist") else token_ids, dtype=np.int64).tobytes()
    digest = hashlib.blake2b(data, digest_size=8, key=str(int(seed)).encode()).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def pad_sequences(sequences, pad_id: int, pad_to_multiple_of: int | None = None):
    """Right-pad lists of ids to one length; returns (input_ids, attention_mask)."""
    length = max(len(s) for s in sequences)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def document_attention_mask(position_ids: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """Additive [batch, 1, seq, seq] mask letting a token attend only within its own document (a document starts
    where the position ids restart), and only to earlier tokens when `causal`. Models take a 4D mask as it is
    (no reliance on each version's packed-sequence detection); -1e4 rather than -inf keeps fp16 finite."""
    document = (position_ids == 0).cumsum(dim=1)
    allowed = document[:, :, None] == document[:, None, :]
    if causal:
        allowed = allowed & torch.ones(allowed.shape[1:], dtype=torch.bool).tril()
    return torch.where(allowed, 0.0, -1e4)[:, None, :, :]


# Masked-position counts are padded up to a multiple of this: a few distinct shapes, so a compiled model does not
# recompile for every batch, for about 1% more rows in the head.
POSITION_BUCKET = 64


def masked_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat row-major indices of the labelled tokens, their labels), padded to a multiple of POSITION_BUCKET (at
    least one bucket) with position 0 and label -100."""
    flat = labels.reshape(-1)
    positions = (flat != -100).nonzero().squeeze(1)
    size = max(POSITION_BUCKET, -(-positions.numel() // POSITION_BUCKET) * POSITION_BUCKET)
    padded = torch.zeros(size, dtype=torch.long)
    targets = torch.full((size,), -100, dtype=torch.long)
    padded[: positions.numel()] = positions
    targets[: positions.numel()] = flat[positions]
    return padded, targets


@dataclass
class MlmCollator:
    """Mask `mlm_probability` of the tokens (never special tokens or padding); of those, 80% become [MASK],
    10% a random token, 10% stay. Labels are the original ids at masked positions and -100 elsewhere.
    Random draws come from torch's global generator, or from a generator of its own when `seed` is given.

    `per_example_masks` (evaluation): each example's draws come from a generator seeded with `seed` and the
    example's own tokens, so its masks do not depend on its batch, its place in the order or the rank that
    evaluates it: an evaluation on 2 processes masks exactly what one process does, at every evaluation.

    `sparse_positions` (the sparse head): the batch also carries `masked_positions`, the flat (row-major) indices of
    the masked tokens, and `masked_targets`, their labels, both padded to a multiple of POSITION_BUCKET (position 0,
    target -100). Counted here on the CPU, they let the head gather a known number of rows on the device: a boolean
    selection there has a data-dependent shape, which makes the CPU wait for the GPU every step.

    A batch without padding has no attention_mask (an all-ones mask only slows attention down, and makes the
    model's mask code look at the data)."""

    tokenizer: object
    mlm_probability: float = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    whole_word_mask: bool = False
    seed: int | None = None
    pad_to_multiple_of: int | None = None
    per_example_masks: bool = False
    sparse_positions: bool = False
    _generator: torch.Generator | None = field(default=None, init=False, repr=False)
    _generator_pid: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.tokenizer.mask_token_id is None:
            raise ValueError("masked-LM training needs a tokenizer with a mask token")
        vocab_size = len(self.tokenizer)
        self.special = torch.zeros(vocab_size, dtype=torch.bool)
        self.special[[i for i in self.tokenizer.all_special_ids if i < vocab_size]] = True
        self.continuation = continuation_table(self.tokenizer) if self.whole_word_mask else None
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def reset_rng(self) -> None:
        """Start the mask sequence over (evaluation resets it so every evaluation sees the same masks)."""
        self._generator = None

    def _rng(self) -> torch.Generator | None:
        """None (torch's global generator) without a seed: the Trainer seeds it, checkpoints it and restores it on
        resume, so a resumed run masks exactly like an uninterrupted one. With a seed (evaluation): our own."""
        if self.seed is None:
            return None
        if self._generator is None or self._generator_pid != os.getpid():
            worker = torch.utils.data.get_worker_info()
            seed = self.seed + (worker.id if worker is not None else 0) + 1000 * int(os.environ.get("RANK", "0"))
            self._generator = torch.Generator().manual_seed(seed)
            self._generator_pid = os.getpid()
        return self._generator

    def __call__(self, examples):
        if "position_ids" in examples[0]:
            return self._documents(examples)
        sequences = [e["input_ids"] for e in examples]
        if all(len(s) == len(sequences[0]) for s in sequences) and not self.pad_to_multiple_of:
            input_ids = torch.as_tensor(sequences, dtype=torch.long)
            input_ids, labels = self.mask_tokens(input_ids, torch.ones_like(input_ids, dtype=torch.bool))
            return self._with_positions({"input_ids": input_ids, "labels": labels})
        input_ids, attention_mask = pad_sequences(sequences, self.pad_id, self.pad_to_multiple_of)
        input_ids, labels = self.mask_tokens(input_ids, attention_mask.bool())
        return self._with_positions({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels})

    def _with_positions(self, batch: dict) -> dict:
        if self.sparse_positions:
            batch["masked_positions"], batch["masked_targets"] = masked_positions(batch["labels"])
        return batch

    def _documents(self, examples):
        """Blocks packed with `--packing documents`: attention only inside each document."""
        input_ids = torch.as_tensor([e["input_ids"] for e in examples], dtype=torch.long)
        position_ids = torch.as_tensor([e["position_ids"] for e in examples], dtype=torch.long)
        input_ids, labels = self.mask_tokens(input_ids, torch.ones_like(input_ids, dtype=torch.bool))
        return self._with_positions({"input_ids": input_ids, "position_ids": position_ids,
                                     "attention_mask": document_attention_mask(position_ids), "labels": labels})

    def mask_tokens(self, input_ids: torch.Tensor, real: torch.Tensor):
        draw, action, random_ids = self._draws(input_ids, real)
        maskable = real & ~self.special[input_ids]
        if self.whole_word_mask:
            draw = draw.gather(1, self._word_start_index(input_ids))  # every piece of a word shares its first draw
        masked = (draw < self.mlm_probability) & maskable
        labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
        to_mask = masked & (action < self.mask_replace_prob)
        to_random = masked & (action >= self.mask_replace_prob) & (action < self.mask_replace_prob + self.random_replace_prob)
        corrupted = input_ids.clone()
        corrupted[to_mask] = self.tokenizer.mask_token_id
        corrupted[to_random] = random_ids[to_random]
        return corrupted, labels

    def _draws(self, input_ids: torch.Tensor, real: torch.Tensor):
        """(mask draw, replacement draw, random token ids), each shaped like input_ids."""
        if not self.per_example_masks:
            rng = self._rng()
            draw = torch.rand(input_ids.shape, generator=rng)
            action = torch.rand(input_ids.shape, generator=rng)
            return draw, action, torch.randint(len(self.tokenizer), input_ids.shape, generator=rng)
        draw = torch.ones(input_ids.shape)  # padding: never masked
        action = torch.zeros(input_ids.shape)
        random_ids = torch.zeros_like(input_ids)
        for row, length in enumerate(real.sum(dim=1).tolist()):  # real tokens are a prefix (right padding)
            generator = torch.Generator().manual_seed(example_seed(self.seed or 0, input_ids[row, :length]))
            draw[row, :length] = torch.rand(length, generator=generator)
            action[row, :length] = torch.rand(length, generator=generator)
            random_ids[row, :length] = torch.randint(len(self.tokenizer), (length,), generator=generator)
        return draw, action, random_ids

    def _word_start_index(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        starts = ~self.continuation[input_ids]
        return torch.where(starts, positions, torch.zeros_like(positions)).cummax(dim=1).values


@dataclass
class CausalLmCollator:
    """Next-token batches: labels are the inputs (the model shifts them); padding, if any, is ignored."""

    pad_id: int = 0

    def __call__(self, examples):
        if "position_ids" in examples[0]:
            # Packed documents: a block-diagonal causal mask; a document's first token is not predicted from the
            # previous document.
            input_ids = torch.as_tensor([e["input_ids"] for e in examples], dtype=torch.long)
            position_ids = torch.as_tensor([e["position_ids"] for e in examples], dtype=torch.long)
            labels = input_ids.masked_fill(position_ids == 0, -100)
            return {"input_ids": input_ids, "position_ids": position_ids, "labels": labels,
                    "attention_mask": document_attention_mask(position_ids, causal=True)}
        input_ids, attention_mask = pad_sequences([e["input_ids"] for e in examples], self.pad_id)
        if bool(attention_mask.all()):  # full blocks (CPU tensors): no mask, so attention can use its causal kernel
            return {"input_ids": input_ids, "labels": input_ids.clone()}
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
