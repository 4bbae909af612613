"""The order of training examples: batches of similar length, in random order.

Padding each batch to its own longest example only saves time when the examples of a batch have similar lengths.
Sorting the whole epoch by length would make every epoch run from long to short examples, the same way each time;
the sampler transformers ships (`LengthGroupedSampler`) sorts inside "mega-batches" of 50 batches but then keeps
each mega-batch's batches in that sorted order, so every mega-batch still runs from long to short. Measured on
GLUE (docs/glue_training_order.md), that pattern made one-seed results far noisier than a random order.

Here the batches themselves are shuffled after grouping: within a batch the lengths are similar (little padding),
and the sequence of batches is as random as in a shuffled epoch. The order depends only on the seed and the epoch
(`set_epoch`, which the Trainer calls), so every rank draws the same one and a resumed run sees the same order as
an uninterrupted one.
"""

import torch
from torch.utils.data import Sampler


class ShuffledLengthGroupedSampler(Sampler[int]):
    """Indices of `lengths` for one epoch, `batch_size` by `batch_size` (the DataLoader cuts batches from them):

    1. shuffle all examples;
    2. cut the shuffled order into mega-batches of `mega_batch_size` batches and sort each by length, longest first;
    3. cut each mega-batch into batches and shuffle all the batches of the epoch; the batch holding the longest
       example goes first (if memory runs out, it does at the first step), a short last batch stays last (so that
       no batch straddles two groups).
    """

    def __init__(self, lengths, batch_size: int, seed: int = 0, mega_batch_size: int = 50):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.batch_size = batch_size
        self.seed = seed
        self.mega_batch_size = mega_batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[torch.Tensor]:
        """This epoch's batches, in training order."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        group = self.batch_size * self.mega_batch_size
        batches = []
        for start in range(0, len(order), group):
            chunk = order[start:start + group]
            chunk = chunk[torch.argsort(-self.lengths[chunk], stable=True)]
            batches += list(chunk.split(self.batch_size))
        if not batches:
            return []
        short_last = [batches.pop()] if len(batches[-1]) < self.batch_size else []
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()] + short_last
        longest = max(range(len(batches)), key=lambda i: (int(self.lengths[batches[i]].max()), -i))
        if not short_last or longest != len(batches) - 1:  # a short last batch keeps its place
            batches.insert(0, batches.pop(longest))
        return batches

    def __iter__(self):
        for batch in self.batches():
            yield from batch.tolist()


# What each --train_sampling_strategy means in run_glue.py, in the words its record keeps.
TRAIN_ORDERS = {
    "group_by_length": "batches of similar length, the batches in random order (lmzoo.sampling)",
    "random": "uniformly random",
    "sequential": "file order",
}


def describe_train_order(strategy: str) -> str:
    return TRAIN_ORDERS.get(strategy, strategy)
