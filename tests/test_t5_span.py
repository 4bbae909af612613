"""T5 span corruption: mask properties, exact lengths, sentinel pairing, merge-back, tokenizer lookup, seeding."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmzoo import t5_span
from lmzoo.t5_span import (
    IGNORE_INDEX,
    DataCollatorForT5SpanCorruption,
    expand_input_length,
    merge_back,
    random_spans_noise_mask,
    random_spans_noise_mask_batch,
)

EOS, PAD = 1, 0
SENTINELS = list(range(32099, 32099 - 2000, -1))  # the T5 layout: <extra_id_0> is the last id, counting down
SENTINEL_SET = set(SENTINELS)
RAW_TOKENS = (100, 30000)  # raw token ids never collide with EOS, PAD or the sentinels above

lengths = st.integers(min_value=2, max_value=600)
densities = st.floats(min_value=0.01, max_value=0.99)
mean_spans = st.floats(min_value=1.0, max_value=10.0)
seeds = st.integers(min_value=0, max_value=2**32 - 1)
fast = settings(max_examples=100, deadline=None)


def expected_counts(length, density, mean_span):
    """The spec, written out independently of the module: (noise tokens, noise spans)."""
    num_noise = min(max(round(length * density), 1), length - 1)
    num_spans = min(max(round(num_noise / mean_span), 1), num_noise, length - num_noise)
    return num_noise, num_spans


def runs(mask):
    """[(is_noise, run_length), ...] of a 1-D bool mask."""
    change = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(mask)]])
    return [(bool(mask[s]), int(e - s)) for s, e in zip(starts, ends)]


def check_mask(mask, length, density, mean_span):
    num_noise, num_spans = expected_counts(length, density, mean_span)
    assert mask.shape == (length,) and mask.dtype == bool
    assert int(mask.sum()) == num_noise
    kinds = [is_noise for is_noise, _ in runs(mask)]
    assert kinds == [False, True] * num_spans  # alternating, non-noise first, noise last


def collator(input_length, density=0.15, mean_span=3.0, seed=0, **kwargs):
    return DataCollatorForT5SpanCorruption(
        input_length=input_length, noise_density=density, mean_noise_span_length=mean_span, seed=seed,
        sentinel_ids=SENTINELS, eos_token_id=EOS, pad_token_id=PAD, **kwargs,
    )


def raw_examples(batch_size, raw_length, seed=0):
    rng = np.random.default_rng(seed)
    return [{"input_ids": rng.integers(*RAW_TOKENS, size=raw_length).tolist()} for _ in range(batch_size)]


@pytest.mark.parametrize(
    "max_seq_length, raw_length, target_length", [(512, 568, 114), (128, 141, 29)]
)
def test_expand_input_length_matches_t5(max_seq_length, raw_length, target_length):
    assert expand_input_length(max_seq_length, 0.15, 3.0) == (raw_length, target_length)


def t5_reference_lengths(inputs_length, noise_density, mean_noise_span_length):
    """T5's random_spans_helper (as transcribed in Hugging Face's Flax run_t5_mlm.py), written out here."""
    def lengths(tokens_length):
        num_noise_tokens = int(round(tokens_length * noise_density))
        num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
        return tokens_length - num_noise_tokens + num_noise_spans + 1, num_noise_tokens + num_noise_spans + 1

    tokens_length = inputs_length
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    inputs_length_found, targets_length = lengths(tokens_length)
    if noise_density == 0.5 and targets_length > inputs_length_found:
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


def corrupted(raw, density, mean_span):
    num_noise, num_spans = expected_counts(raw, density, mean_span)
    return raw - num_noise + num_spans + 1, num_noise + num_spans + 1


# (input length, noise density, mean span): T5's and BART-like settings, the density 0.5 cases where T5's helper
# gives up a raw token, and the cases where it is not self-consistent (mean span 1; density above 0.5).
REFERENCE_SETTINGS = [(n, d, m) for n in (64, 128, 256, 512, 568, 1024) for d, m in ((0.15, 3.0), (0.5, 3.0))] + [
    (n, d, m) for n in (16, 100, 512) for d, m in ((0.3, 2.0), (0.5, 2.0), (0.5, 5.0), (0.5, 8.0), (0.15, 1.0),
                                                   (0.5, 1.0), (0.8, 3.0), (0.15, 10.0))]


@pytest.mark.parametrize("input_length, density, mean_span", REFERENCE_SETTINGS)
def test_lengths_equal_t5s_helper_where_it_is_self_consistent(input_length, density, mean_span):
    """Expected values come from the transcription above and the counting rules, never from lmzoo: T5's helper
    where its raw length really corrupts to an input that fits and to the target it states; otherwise the largest
    raw length that fits. Then the collator must produce exactly those shapes."""
    reference_raw, reference_target = t5_reference_lengths(input_length, density, mean_span)
    real_input, real_target = corrupted(reference_raw, density, mean_span)
    if real_input <= input_length and real_target == reference_target:
        expected = (reference_raw, reference_target)
    else:
        raw = 2
        while corrupted(raw + 1, density, mean_span)[0] <= input_length:
            raw += 1
        expected = (raw, corrupted(raw, density, mean_span)[1])
    assert expand_input_length(input_length, density, mean_span) == expected
    batch = collator(input_length, density, mean_span)(raw_examples(2, expected[0]))
    assert batch["labels"].shape == (2, expected[1]) and (batch["labels"][:, -1] == EOS).all()
    assert batch["input_ids"].shape == (2, input_length)


def test_t5s_published_lengths_at_density_one_half():
    """The values the numbers issue quoted from T5's helper (mean span 3), and that helper's own inconsistency
    at mean span 1 (its 64 raw tokens would corrupt to 65 input tokens), which we do not copy."""
    published = {64: (94, 64), 128: (190, 128), 256: (382, 256), 512: (766, 512), 568: (850, 568),
                 1024: (1534, 1024)}
    assert {n: expand_input_length(n, 0.5, 3.0) for n in published} == published
    assert t5_reference_lengths(64, 0.5, 1.0) == (64, 65) and corrupted(64, 0.5, 1.0)[0] == 65
    assert expand_input_length(64, 0.5, 1.0) == (63, 64)


@fast
@given(length=lengths, density=densities, mean_span=mean_spans, seed=seeds)
def test_single_mask_counts_and_alternation(length, density, mean_span, seed):
    mask = random_spans_noise_mask(length, density, mean_span, np.random.default_rng(seed))
    check_mask(mask, length, density, mean_span)


@fast
@given(length=lengths, density=densities, mean_span=mean_spans, seed=seeds, batch_size=st.integers(1, 6))
def test_batch_mask_rows_each_satisfy_the_spec(length, density, mean_span, seed, batch_size):
    masks = random_spans_noise_mask_batch(batch_size, length, density, mean_span, np.random.default_rng(seed))
    assert masks.shape == (batch_size, length)
    for mask in masks:
        check_mask(mask, length, density, mean_span)


def test_batch_rows_are_drawn_independently():
    masks = random_spans_noise_mask_batch(64, 568, 0.15, 3.0, np.random.default_rng(0))
    assert len({mask.tobytes() for mask in masks}) == 64
    # Every position can be noise except the first (spans start with non-noise); the last always is.
    assert not masks[:, 0].any() and masks[:, -1].all()
    assert 0.10 < masks.mean() < 0.20


@fast
@given(max_seq_length=st.integers(16, 1024), density=densities, mean_span=mean_spans)
def test_expand_input_length_is_the_largest_that_fits(max_seq_length, density, mean_span):
    raw_length, target_length = expand_input_length(max_seq_length, density, mean_span)

    def input_length(raw):
        num_noise, num_spans = expected_counts(raw, density, mean_span)
        return raw - num_noise + num_spans + 1

    num_noise, num_spans = expected_counts(raw_length, density, mean_span)
    gave_up_one = density == 0.5 and corrupted(raw_length + 1, density, mean_span)[1] > max_seq_length
    largest = raw_length + 1 if gave_up_one and input_length(raw_length + 1) <= max_seq_length else raw_length
    assert input_length(raw_length) <= max_seq_length < input_length(largest + 1)
    assert target_length == num_noise + num_spans + 1


@fast
@given(max_seq_length=st.integers(16, 1024), density=densities, mean_span=mean_spans, seed=seeds)
def test_collated_batches_have_exact_lengths_and_merge_back(max_seq_length, density, mean_span, seed):
    corrupt = collator(max_seq_length, density, mean_span, seed)
    raw_length, target_length = expand_input_length(max_seq_length, density, mean_span)
    examples = raw_examples(2, raw_length, seed)
    batch = corrupt(examples)
    assert batch["input_ids"].shape == (2, max_seq_length) and batch["input_ids"].dtype == torch.long
    assert batch["labels"].shape == (2, target_length) and batch["labels"].dtype == torch.long
    assert batch["attention_mask"].shape == (2, max_seq_length)
    num_spans = expected_counts(raw_length, density, mean_span)[1]
    for example, inputs, labels in zip(examples, batch["input_ids"].tolist(), batch["labels"].tolist()):
        assert [t for t in inputs if t in SENTINEL_SET] == SENTINELS[:num_spans]  # in order, one per span
        assert [t for t in labels if t in SENTINEL_SET] == SENTINELS[:num_spans]  # the same ones in the target
        assert labels[-1] == EOS and IGNORE_INDEX not in labels
        assert merge_back(inputs, labels, SENTINELS, EOS) == example["input_ids"]


def test_sentinel_precedes_the_span_it_hides():
    corrupt = collator(32, density=0.3, mean_span=2.0, seed=5)
    example = raw_examples(1, corrupt.raw_length, seed=5)
    batch = corrupt(example)
    inputs, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert labels[0] == SENTINELS[0]  # the target opens with the first sentinel
    assert inputs[0] == example[0]["input_ids"][0]  # the input opens with kept text
    assert inputs[-1] == EOS and labels[-1] == EOS


def test_short_input_is_padded_to_exact_length():
    # Density 0.5, mean span 1: 15 raw tokens corrupt to 15, 16 to 17, so 16 cannot be filled exactly.
    corrupt = collator(16, density=0.5, mean_span=1.0)
    assert (corrupt.raw_length, corrupt.target_length) == (15, 16)
    examples = raw_examples(3, corrupt.raw_length)
    batch = corrupt(examples)
    assert batch["input_ids"].shape == (3, 16) and batch["labels"].shape == (3, 16)
    assert (batch["input_ids"][:, -1] == PAD).all() and (batch["input_ids"][:, -2] == EOS).all()
    assert batch["attention_mask"][:, :-1].all() and not batch["attention_mask"][:, -1].any()
    for example, inputs, labels in zip(examples, batch["input_ids"], batch["labels"]):
        assert merge_back(inputs, labels, SENTINELS, EOS) == example["input_ids"]


def test_longer_target_length_pads_labels_with_ignore_index():
    corrupt = collator(128, target_length=32)
    batch = corrupt(raw_examples(2, corrupt.raw_length))
    assert batch["labels"].shape == (2, 32)
    assert (batch["labels"][:, 28] == EOS).all() and (batch["labels"][:, 29:] == IGNORE_INDEX).all()


def test_too_long_examples_are_refused():
    corrupt = collator(128)
    with pytest.raises(ValueError, match="chunk the text to 141 tokens"):
        corrupt(raw_examples(2, 160))


def test_ragged_batches_are_refused():
    with pytest.raises(ValueError, match="same length"):
        collator(128)(raw_examples(1, 141) + raw_examples(1, 140))


def test_same_seed_same_batches_different_seed_different():
    examples = raw_examples(8, 568)
    first, again, other = collator(512, seed=1), collator(512, seed=1), collator(512, seed=2)
    for _ in range(3):
        a, b, c = first(examples), again(examples), other(examples)
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not torch.equal(a["input_ids"], c["input_ids"])
    assert not torch.equal(first(examples)["input_ids"], collator(512, seed=1)(examples)["input_ids"])  # stream moves on


class FakeWorker:
    def __init__(self, seed):
        self.seed = seed


def test_dataloader_workers_get_their_own_reproducible_streams(monkeypatch):
    examples = raw_examples(4, 141)

    def batch_in_worker(torch_seed):
        monkeypatch.setattr(t5_span, "get_worker_info", lambda: FakeWorker(torch_seed))
        return collator(128, seed=7)(examples)["input_ids"]

    assert torch.equal(batch_in_worker(1000), batch_in_worker(1000))
    assert not torch.equal(batch_in_worker(1000), batch_in_worker(1001))


def tokenizer_with_sentinels_in_the_middle(num_sentinels):
    """A WordLevel tokenizer whose <extra_id_i> ids sit between ordinary words, not at the end of the vocab."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    words = [f"w{i}" for i in range(200)]
    tokens = ["<pad>", "</s>", "<unk>"] + words[:100] + t5_span.sentinel_tokens(num_sentinels) + words[100:]
    model = WordLevel({token: i for i, token in enumerate(tokens)}, unk_token="<unk>")
    backend = Tokenizer(model)
    backend.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def test_sentinels_are_looked_up_by_token_string():
    tokenizer = tokenizer_with_sentinels_in_the_middle(20)
    corrupt = DataCollatorForT5SpanCorruption(tokenizer, input_length=128, seed=0)
    vocab = tokenizer.get_vocab()
    assert corrupt.sentinel_ids == [vocab[f"<extra_id_{i}>"] for i in range(7)]
    assert corrupt.sentinel_ids == list(range(103, 110)) and max(vocab.values()) == 222  # 100 words come after
    assert (corrupt.eos_token_id, corrupt.pad_token_id) == (1, 0)
    raw = [{"input_ids": tokenizer(" ".join(f"w{i % 200}" for i in range(141)))["input_ids"]}]
    batch = corrupt(raw)
    inputs, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert [t for t in inputs if 103 <= t < 123] == list(range(103, 110))
    assert merge_back(inputs, labels, corrupt.sentinel_ids, 1) == raw[0]["input_ids"]


def test_tokenizer_without_enough_sentinels_is_a_clear_error():
    with pytest.raises(ValueError, match=r"needs 28 sentinel tokens .*lacks 25"):
        DataCollatorForT5SpanCorruption(tokenizer_with_sentinels_in_the_middle(3), input_length=512)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_length": 2}, "at least 3"),
        ({"input_length": 128, "noise_density": 0.0}, "noise_density"),
        ({"input_length": 128, "noise_density": 1.0}, "noise_density"),
        ({"input_length": 128, "mean_noise_span_length": 0}, "mean_noise_span_length"),
        ({"input_length": 128, "target_length": 20}, "target_length 20"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataCollatorForT5SpanCorruption(sentinel_ids=SENTINELS, eos_token_id=EOS, pad_token_id=PAD, **kwargs)


def test_explicit_ids_need_no_tokenizer_but_ids_are_required():
    with pytest.raises(ValueError, match="eos"):
        DataCollatorForT5SpanCorruption(input_length=128, sentinel_ids=SENTINELS, pad_token_id=PAD)
