"""The training order of run_glue.py: batches of similar length, and the batches themselves in random order."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from lmzoo.sampling import ShuffledLengthGroupedSampler


@pytest.fixture
def lengths():
    return np.random.default_rng(0).integers(5, 128, size=5003).tolist()  # 5003: the last batch is short


def cut(order, batch_size):
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def test_every_example_once_per_epoch_and_the_order_depends_on_seed_and_epoch_only(lengths):
    sampler = ShuffledLengthGroupedSampler(lengths, batch_size=32, seed=7)
    first = list(sampler)
    assert sorted(first) == list(range(len(lengths))) and len(sampler) == len(lengths)
    assert list(ShuffledLengthGroupedSampler(lengths, batch_size=32, seed=7)) == first  # every rank draws it
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(second) == sorted(first)
    sampler.set_epoch(0)
    assert list(sampler) == first  # a resumed epoch sees the same order
    assert list(ShuffledLengthGroupedSampler(lengths, batch_size=32, seed=8)) != first


def test_batches_hold_similar_lengths(lengths):
    """Padding each batch to its longest example wastes far less than with uniformly random batches."""
    lengths_ = np.asarray(lengths)

    def padding(order):
        return sum(len(b) * lengths_[b].max() - lengths_[b].sum() for b in cut(order, 32)) / lengths_.sum()

    grouped = padding(list(ShuffledLengthGroupedSampler(lengths, batch_size=32, seed=1)))
    uniform = padding(np.random.default_rng(1).permutation(len(lengths)).tolist())
    assert grouped < 0.1 * uniform, (grouped, uniform)


def test_the_batch_sequence_has_no_length_trend(lengths):
    """Sorted mega-batches left in order run from long to short over and over; shuffled batches do not: the rank
    correlation between a batch's place in its mega-batch and its length is about 0."""
    lengths_ = np.asarray(lengths)
    sampler = ShuffledLengthGroupedSampler(lengths, batch_size=32, seed=3, mega_batch_size=50)
    batches = cut(list(sampler), 32)[1:-1]  # the longest batch is first by design, the short one last
    place_in_group = [i % 50 for i in range(len(batches))]
    rho = spearmanr(place_in_group, [lengths_[b].mean() for b in batches])[0]
    assert abs(rho) < 0.2, rho
    sorted_groups = [g for start in range(0, len(lengths), 1600)
                     for g in cut(sorted(range(start, min(start + 1600, len(lengths))), key=lambda i: -lengths[i]), 32)]
    assert spearmanr([i % 50 for i in range(len(sorted_groups))], [lengths_[b].mean() for b in sorted_groups])[0] < -0.9


def test_the_longest_batch_comes_first_and_a_short_batch_last(lengths):
    order = list(ShuffledLengthGroupedSampler(lengths, batch_size=32, seed=5))
    batches = cut(order, 32)
    assert max(lengths) == max(lengths[i] for i in batches[0])
    assert [len(b) for b in batches[:-1]] == [32] * (len(batches) - 1) and len(batches[-1]) == 5003 % 32
