"""Batches of an epoch through a torch DataLoader: sampling, tokenising and collating run in worker processes.

A batch is a pure function of (seed, epoch, batch index) and the epoch's video order (vidlang.data.longvideo),
so the loader is a map-style dataset over the batch indices still to come in the epoch: resuming at batch b of
an epoch builds the loader from b on, and workers, prefetching or their number cannot change what a batch holds
(the trainer stores the epoch, its order and the batch index; that is the loader's whole state).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset


class EpochBatches(Dataset):
    """Item i = this rank's collated share of global batch `start + i` of one epoch."""

    def __init__(self, ds, order: Sequence[str], epoch: int, start: int, stop: int, collate: Callable,
                 rank: int = 0, world: int = 1):
        self.ds, self.order, self.epoch = ds, list(order), int(epoch)
        self.start, self.stop = int(start), int(stop)
        self.collate, self.rank, self.world = collate, int(rank), int(world)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int):
        samples, video_ids = self.ds.batch_samples(self.order, self.epoch, self.start + i, self.rank, self.world)
        return self.collate(samples, video_ids)


def epoch_loader(batches: EpochBatches, workers: int = 0, prefetch: int = 2) -> DataLoader:
    """A DataLoader yielding the batches in order; `workers` processes build them `prefetch` batches ahead.

    It gets a generator of its own: iterating a DataLoader draws a base seed for its workers from its generator,
    by default torch's global one, which would shift the model's dropout stream depending on when the loader was
    created (e.g. after a resume) and break exact resume. Batches themselves use no torch randomness.
    """
    return DataLoader(batches, batch_size=None, shuffle=False, num_workers=workers,
                      prefetch_factor=prefetch if workers else None, collate_fn=_keep,
                      persistent_workers=False, pin_memory=False,
                      generator=torch.Generator().manual_seed(batches.epoch))


def _keep(batch):
    return batch
