"""T5 span corruption ("random spans noise"): the length arithmetic, the noise mask and the data collator.

T5 pretrains by hiding random spans of the text. A raw sequence of L tokens gets
``num_noise = round(L * noise_density)`` noise tokens (clamped to [1, L-1]) cut into
``num_spans = round(num_noise / mean_noise_span_length)`` spans (at least 1, at most the number of noise tokens
and of non-noise tokens). Noise and non-noise tokens are each split at random into ``num_spans`` non-empty runs,
interleaved so that the sequence starts with non-noise and ends with noise. Each noise span is replaced in the
encoder input by one sentinel (``<extra_id_0>``, ``<extra_id_1>``, ... in order); the target lists every
sentinel followed by the tokens it hides. Both get an EOS::

    raw     : The cute dog walks in the park
    input   : The <extra_id_0> walks <extra_id_1> park </s>
    target  : <extra_id_0> cute dog <extra_id_1> in the </s>

so ``input_length  = (L - num_noise) + num_spans + 1`` and ``target_length = num_noise + num_spans + 1``.

To fill an encoder of ``max_seq_length`` tokens we therefore feed *more* raw tokens: `expand_input_length` finds
the largest L whose input length is <= max_seq_length. Worked example, max_seq_length 128, density 0.15, mean
span 3.0:

    L = 141: num_noise = round(21.15) = 21, num_spans = round(7.0) = 7
             input  = (141 - 21) + 7 + 1 = 128   (fits exactly)
             target = 21 + 7 + 1 = 29
    L = 142: num_noise = round(21.3) = 21, num_spans = 7, input = 121 + 7 + 1 = 129 > 128

so chunk the corpus into 141-token pieces and the collator yields inputs of 128 and labels of 29 tokens
(512 -> 568 raw, 114 target, likewise). The input length grows by 0 or 1 per extra raw token except where the
span count is clamped by the non-noise count (very high densities), where it can grow by 2 and skip
max_seq_length; the collator then pads the input (pad id, attention mask 0) so returned lengths stay exact.

Agreement with T5's own helper (``random_spans_helper`` in google-research/text-to-text-transfer-transformer,
transcribed as ``compute_input_and_target_lengths`` in Hugging Face's Flax ``run_t5_mlm.py``): the same lengths
wherever that helper is self-consistent, including its one exception at noise density exactly 0.5, where it gives
up one raw token so that the target is no longer than the input (64 -> 94 raw / 64 target, 512 -> 766 / 512, not
95 / 65 and 767 / 513). Where the helper is not self-consistent we keep the exact value instead: with mean span
length 1 it starts its search at L = max_seq_length, whose input is already one token too long (64 -> 64 raw,
input 65); above density 0.5 its span count ignores that spans need kept tokens between them, so its lengths are
not what corruption produces.

Rounding is Python's ``round`` (half to even), like Google's ``tf.round`` in
t5.data.preprocessors.random_spans_noise_mask.
"""

from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info

from .collators import example_seed

IGNORE_INDEX = -100  # label value the cross-entropy loss skips


def count_noise(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(num_noise_tokens, num_noise_spans) for a raw sequence of `length` tokens."""
    _check_noise_parameters(noise_density, mean_noise_span_length)
    if length < 2:
        raise ValueError(f"span corruption needs at least 2 tokens (one noise, one kept), got {length}")
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    num_nonnoise = length - num_noise
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    return num_noise, min(num_spans, num_noise, num_nonnoise)


def corrupted_lengths(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(input_length, target_length), EOS included, of a raw sequence of `length` tokens after corruption."""
    num_noise, num_spans = count_noise(length, noise_density, mean_noise_span_length)
    return (length - num_noise) + num_spans + 1, num_noise + num_spans + 1


def expand_input_length(
    max_seq_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
    """(raw_length, target_length): the most raw tokens whose corrupted input fits in max_seq_length (at noise
    density 0.5, one fewer where that keeps the target within max_seq_length, as T5's helper does)."""

    def fits(length: int) -> bool:
        return corrupted_lengths(length, noise_density, mean_noise_span_length)[0] <= max_seq_length

    smallest = 2
    if not fits(smallest):
        raise ValueError(f"max_seq_length must be at least 3 (a kept token, a sentinel and EOS), got {max_seq_length}")
    # The input length never decreases as raw tokens are added, so the lengths that fit are a prefix:
    # double until one does not fit, then bisect.
    fitting, too_long = smallest, smallest * 2
    while fits(too_long):
        fitting, too_long = too_long, too_long * 2
    while too_long - fitting > 1:
        middle = (fitting + too_long) // 2
        if fits(middle):
            fitting = middle
        else:
            too_long = middle
    target_length = corrupted_lengths(fitting, noise_density, mean_noise_span_length)[1]
    if noise_density == 0.5 and target_length > max_seq_length and fitting > smallest:
        # T5's helper: "minor hack to get the targets length to be equal to inputs length" (see the module notes)
        fitting -= 1
        target_length = corrupted_lengths(fitting, noise_density, mean_noise_span_length)[1]
    return fitting, target_length


def _check_noise_parameters(noise_density: float, mean_noise_span_length: float) -> None:
    if not 0.0 < noise_density < 1.0:
        raise ValueError(f"noise_density must be strictly between 0 and 1, got {noise_density}")
    if not mean_noise_span_length > 0:
        raise ValueError(f"mean_noise_span_length must be > 0, got {mean_noise_span_length}")


def _random_segment_lengths(num_rows: int, num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """[num_rows, num_segments] lengths >= 1 summing to num_items: uniform random cuts, one draw per row."""
    # Choosing num_segments-1 distinct cut points among the num_items-1 gaps, uniformly, is the same
    # distribution as Google's shuffle of (num_segments-1) ones among the gaps.
    gap_order = np.argsort(rng.random((num_rows, num_items - 1)), axis=1)
    cuts = np.sort(gap_order[:, : num_segments - 1] + 1, axis=1)
    bounds = np.concatenate(
        [np.zeros((num_rows, 1), dtype=np.int64), cuts, np.full((num_rows, 1), num_items, dtype=np.int64)], axis=1
    )
    return np.diff(bounds, axis=1)


def random_spans_noise_mask_batch(
    batch_size: int, length: int, noise_density: float, mean_noise_span_length: float, rng: np.random.Generator
) -> np.ndarray:
    """Bool [batch_size, length], True on noise; every row has the same noise and span counts, drawn independently."""
    num_noise, num_spans = count_noise(length, noise_density, mean_noise_span_length)
    noise_spans = _random_segment_lengths(batch_size, num_noise, num_spans, rng)
    kept_spans = _random_segment_lengths(batch_size, length - num_noise, num_spans, rng)
    # Interleave kept, noise, kept, noise ... and flip the mask at every span boundary.
    span_lengths = np.stack([kept_spans, noise_spans], axis=2).reshape(batch_size, 2 * num_spans)
    boundaries = np.cumsum(span_lengths, axis=1)[:, :-1]
    flips = np.zeros((batch_size, length), dtype=np.int64)
    np.put_along_axis(flips, boundaries, 1, axis=1)
    return np.cumsum(flips, axis=1) % 2 == 1


def random_spans_noise_mask(
    length: int, noise_density: float, mean_noise_span_length: float, rng: np.random.Generator
) -> np.ndarray:
    """Bool [length], True on noise: one sequence's random spans noise mask."""
    return random_spans_noise_mask_batch(1, length, noise_density, mean_noise_span_length, rng)[0]


def collapse_spans_to_sentinels(tokens: np.ndarray, span_mask: np.ndarray, sentinel_ids: np.ndarray) -> np.ndarray:
    """Replace the k-th masked span of each row by sentinel_ids[k] and drop the rest of that span.

    tokens and span_mask are [batch, length]; every row must hold the same number of masked tokens and spans
    (true of one random_spans_noise_mask_batch draw), so the result is rectangular.
    """
    span_starts = span_mask.copy()
    span_starts[:, 1:] &= ~span_mask[:, :-1]
    span_index = np.cumsum(span_starts, axis=1) - 1
    replaced = tokens.copy()
    replaced[span_starts] = sentinel_ids[span_index[span_starts]]
    kept = ~span_mask | span_starts
    kept_per_row = kept.sum(axis=1)
    assert (kept_per_row == kept_per_row[0]).all(), "rows differ in masked token or span counts"
    return replaced[kept].reshape(len(tokens), -1)


def sentinel_tokens(count: int) -> list[str]:
    return [f"<extra_id_{i}>" for i in range(count)]


def sentinel_ids_from_tokenizer(tokenizer: Any, count: int) -> list[int]:
    """Ids of <extra_id_0> .. <extra_id_{count-1}>, looked up by token string (their place in the vocab varies)."""
    vocab = tokenizer.get_vocab()
    wanted = sentinel_tokens(count)
    missing = [token for token in wanted if token not in vocab]
    if missing:
        raise ValueError(
            f"span corruption needs {count} sentinel tokens <extra_id_0> .. <extra_id_{count - 1}> but the tokenizer "
            f"lacks {len(missing)} of them (first missing: {missing[0]}); add them with "
            f"tokenizer.add_tokens([...], special_tokens=True) and resize the model's embeddings"
        )
    return [vocab[token] for token in wanted]


@dataclass
class DataCollatorForT5SpanCorruption:
    """Turns examples of raw token ids into T5 span-corruption batches of exact shapes.

    Each example's ``input_ids`` holds ``raw_length`` tokens without EOS (all examples in a batch the same length;
    chunk the corpus to ``collator.raw_length``). Returns ``input_ids`` [B, input_length], ``labels``
    [B, target_length] (padding, if any, is -100) and, unless disabled, ``attention_mask`` [B, input_length].
    T5ForConditionalGeneration makes decoder inputs from the labels itself.

    Give a tokenizer, or ``sentinel_ids`` (for <extra_id_0>, <extra_id_1>, ...), ``eos_token_id`` and
    ``pad_token_id`` directly; explicit ids win over the tokenizer's. ``target_length`` defaults to the one
    `expand_input_length` gives for ``input_length``.

    Randomness comes from a numpy Generator owned by the collator, seeded with ``seed``: the same seed and
    batches give the same output. In a DataLoader worker the stream is seeded with (seed, the worker's torch
    seed), so workers differ from each other and from one epoch to the next, and are still reproducible when
    the DataLoader's torch generator is seeded (the Trainer seeds it). With ``per_example_noise`` (evaluation)
    each example's spans come from a Generator seeded with ``seed`` and the example's own tokens instead,
    whatever its batch, its order or the rank that evaluates it.
    """

    tokenizer: Any = field(default=None, repr=False)
    _: KW_ONLY
    input_length: int
    target_length: int | None = None
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    seed: int | None = 0
    sentinel_ids: Sequence[int] | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    return_attention_mask: bool = True
    per_example_noise: bool = False
    raw_length: int = field(init=False)
    _rng: np.random.Generator | None = field(default=None, init=False, repr=False)
    _rng_owner: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.raw_length, natural_target_length = expand_input_length(
            self.input_length, self.noise_density, self.mean_noise_span_length
        )
        if self.target_length is None:
            self.target_length = natural_target_length
        num_spans = count_noise(self.raw_length, self.noise_density, self.mean_noise_span_length)[1]
        self.eos_token_id = self._token_id("eos", self.eos_token_id)
        self.pad_token_id = self._token_id("pad", self.pad_token_id)
        if self.sentinel_ids is None:
            if self.tokenizer is None:
                raise ValueError("give a tokenizer or sentinel_ids, eos_token_id and pad_token_id")
            self.sentinel_ids = sentinel_ids_from_tokenizer(self.tokenizer, num_spans)
        self._sentinel_array = np.asarray(self.sentinel_ids, dtype=np.int64)
        self._check_fits(self.raw_length)

    def _token_id(self, name: str, explicit: int | None) -> int:
        if explicit is not None:
            return int(explicit)
        token_id = getattr(self.tokenizer, f"{name}_token_id", None)
        if token_id is None:
            raise ValueError(f"no {name} token id: give {name}_token_id or a tokenizer that has a {name} token")
        return int(token_id)

    def _check_fits(self, raw_length: int) -> None:
        """Refuse raw lengths whose corruption would need more room or sentinels than this collator has."""
        num_spans = count_noise(raw_length, self.noise_density, self.mean_noise_span_length)[1]
        if num_spans > len(self._sentinel_array):
            raise ValueError(
                f"raw length {raw_length} makes {num_spans} noise spans, needing {num_spans} sentinel ids; "
                f"only {len(self._sentinel_array)} given"
            )
        input_length, target_length = corrupted_lengths(raw_length, self.noise_density, self.mean_noise_span_length)
        if input_length > self.input_length or target_length > self.target_length:
            raise ValueError(
                f"raw length {raw_length} corrupts to input {input_length} / target {target_length} tokens, more than "
                f"input_length {self.input_length} / target_length {self.target_length}; chunk the text to "
                f"{self.raw_length} tokens"
            )

    def reset_rng(self) -> None:
        """Start the noise sequence over (evaluation resets it so every evaluation sees the same spans)."""
        self._rng = None

    def _generator(self) -> np.random.Generator:
        """The collator's Generator; a DataLoader worker gets its own, seeded from its torch seed.

        With ``seed=None`` each batch's Generator is seeded from torch's global generator instead, which the
        Trainer checkpoints and restores: a resumed run then corrupts exactly like an uninterrupted one."""
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        worker = get_worker_info()
        owner = None if worker is None else worker.seed
        if self._rng is None or self._rng_owner != owner:
            self._rng = np.random.default_rng(self.seed if owner is None else [self.seed, owner])
            self._rng_owner = owner
        return self._rng

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [np.asarray(example["input_ids"], dtype=np.int64) for example in examples]
        if len({row.shape for row in rows}) != 1 or rows[0].ndim != 1:
            raise ValueError(
                f"every example's input_ids must be a flat sequence of the same length (chunk the text to "
                f"{self.raw_length} tokens); got shapes {sorted({row.shape for row in rows})}"
            )
        tokens = np.stack(rows)
        self._check_fits(tokens.shape[1])
        if self.per_example_noise:  # evaluation: an example's spans depend on it alone, not on its batch or rank
            noise = np.stack([
                random_spans_noise_mask(tokens.shape[1], self.noise_density, self.mean_noise_span_length,
                                        np.random.default_rng(example_seed(self.seed or 0, row)))
                for row in tokens
            ])
        else:
            noise = random_spans_noise_mask_batch(
                len(tokens), tokens.shape[1], self.noise_density, self.mean_noise_span_length, self._generator()
            )
        # The input keeps the non-noise tokens and a sentinel per noise span; the target is the mirror image.
        inputs = collapse_spans_to_sentinels(tokens, noise, self._sentinel_array)
        targets = collapse_spans_to_sentinels(tokens, ~noise, self._sentinel_array)
        batch = {
            "input_ids": torch.from_numpy(self._finish(inputs, self.input_length, self.pad_token_id)),
            "labels": torch.from_numpy(self._finish(targets, self.target_length, IGNORE_INDEX)),
        }
        if self.return_attention_mask:
            real = inputs.shape[1] + 1  # with EOS
            row = (np.arange(self.input_length) < real).astype(np.int64)
            batch["attention_mask"] = torch.from_numpy(np.repeat(row[None, :], len(tokens), axis=0))
        return batch

    def _finish(self, corrupted: np.ndarray, length: int, pad_value: int) -> np.ndarray:
        """Append EOS, then pad on the right to exactly `length` columns."""
        rows, width = corrupted.shape
        out = np.full((rows, length), pad_value, dtype=np.int64)
        out[:, :width] = corrupted
        out[:, width] = self.eos_token_id
        return out


def merge_back(input_ids: Any, labels: Any, sentinel_ids: Sequence[int], eos_id: int) -> list[int]:
    """The raw token sequence of one corrupted (input_ids, labels) pair: each sentinel in the input is replaced by
    the span that follows the same sentinel in the labels. Reading stops at each side's first EOS; -100 is skipped.
    Ambiguous if the raw text itself contained sentinel or EOS ids."""
    sentinels = set(int(s) for s in sentinel_ids)
    hidden: dict[int, list[int]] = {}
    current = None
    for token in _until_eos(labels, eos_id):
        if token in sentinels:
            current = hidden.setdefault(token, [])
        elif current is not None:
            current.append(token)
    merged: list[int] = []
    for token in _until_eos(input_ids, eos_id):
        merged.extend(hidden.get(token, []) if token in sentinels else [token])
    return merged


def _until_eos(ids: Any, eos_id: int) -> list[int]:
    values = [int(v) for v in (ids.tolist() if hasattr(ids, "tolist") else ids) if int(v) != IGNORE_INDEX]
    return values[: values.index(eos_id)] if eos_id in values else values
