"""A training loader that resumes mid-epoch exactly: the data seen after a resume is the data an
uninterrupted run would have seen.

Lightning restores weights, optimiser, scheduler and loop counters from a checkpoint, but a plain
shuffled ``DataLoader`` restarts its epoch from a fresh random order, and random crops follow the
global RNG. Here everything random in an epoch is a function of ``(seed, epoch, position)``:

* :class:`ResumableSampler` draws the epoch's permutation from ``(seed, epoch)`` and gives every
  sample a seed of its own from ``(seed, epoch, position)``;
* :class:`ResumableDataLoader` reseeds the (forked) global torch RNG with that sample seed around each
  ``dataset[i]`` (the crop and D4 draws of :class:`~esrt_lit.data.datasets.SRTrainDataset` come from
  it), counts the batches it has handed out and implements ``state_dict``/``load_state_dict``, which
  Lightning stores in every checkpoint and restores before the epoch's iterator is made; after a
  restore the sampler skips the batches already trained on (in the restored epoch only);
* :class:`~esrt_lit.data.SRDataModule` trains from this loader.

Under DDP the sampler splits each epoch's order across ranks itself (it is a ``DistributedSampler``,
so Lightning leaves it in place).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["ResumableDataLoader", "ResumableSampler"]

log = logging.getLogger(__name__)


def _mix(*values: int) -> int:
    """A well-mixed 63-bit seed from integers (NumPy ``SeedSequence``)."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, np.uint64)[0]) >> 1


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class ResumableSampler(DistributedSampler):
    """Yields ``(index, sample_seed)`` keys; the order and seeds depend only on ``(seed, epoch)``.

    Args:
        dataset: the dataset (only its length is used).
        seed: base seed.
        shuffle: random order per epoch (else ``0..n-1``).

    The tail that does not split evenly across ranks is padded by repeating the order (the loader's
    ``drop_last`` drops incomplete batches).
    """

    def __init__(self, dataset: Dataset, seed: int, shuffle: bool = True) -> None:
        world, rank = _world()
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        #: ``(epoch, samples)``: skip this rank's first ``samples`` of that epoch (once), after a restore
        self.skip: tuple[int, int] = (-1, 0)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        n = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            generator = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        order += (order * (self.total_size // max(n, 1) + 1))[: self.total_size - n]
        positions = range(self.rank, self.total_size, self.num_replicas)
        start = self.skip[1] if self.skip[0] == self.epoch else 0
        self.skip = (-1, 0)
        for pos in positions[start:]:
            yield order[pos], _mix(self.seed, self.epoch, pos)


class _SeededItems(Dataset):
    """``dataset[index]`` drawn with the global torch RNG seeded by the key's sample seed."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class _CountingIterator:
    """Counts the batches handed out; the count starts at the restored position of its epoch."""

    def __init__(self, iterator: Iterator[Any], loader: ResumableDataLoader) -> None:
        self.iterator = iterator
        self.loader = loader
        self.started = False

    def __iter__(self) -> _CountingIterator:
        return self

    def __next__(self) -> Any:
        loader = self.loader
        if not self.started:  # lazily: Lightning sets the sampler's epoch after creating the iterator
            epoch, batches = loader.skip
            loader.batches_yielded = batches if epoch == getattr(loader.sampler, "epoch", None) else 0
            loader.skip, self.started = (-1, 0), True
        batch = next(self.iterator)
        loader.batches_yielded += 1
        return batch

    def __len__(self) -> int:
        return len(self.iterator)  # type: ignore[arg-type]


class ResumableDataLoader(DataLoader):
    """A shuffled training ``DataLoader`` with an exact ``state_dict``/``load_state_dict``.

    Args:
        dataset: a map-style dataset whose randomness comes from the global torch RNG.
        batch_size: batch size.
        shuffle: random order per epoch.
        seed: base seed of the order and of every sample's draws.
        drop_last: drop the last incomplete batch.
        sampler: only for Lightning, which rebuilds loaders with a sampler of its own (e.g.
            ``overfit_batches``); the loader is then a plain one over ``dataset`` and not resumable.
        **kwargs: other ``DataLoader`` arguments (``num_workers``, ``pin_memory``, ...).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        sampler: Any = None,
        **kwargs: Any,
    ) -> None:
        self.seed = int(seed)
        self.batches_yielded = 0
        self.skip: tuple[int, int] = (-1, 0)  # (epoch, batches) already trained on, after a restore
        self.resumable = sampler is None
        kwargs.pop("batch_sampler", None)
        if self.resumable:
            sampler = ResumableSampler(dataset, self.seed, shuffle=shuffle)
            dataset = _SeededItems(dataset)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        self.batches_yielded = 0
        return _CountingIterator(super().__iter__(), self)

    def state_dict(self) -> dict[str, int | bool]:
        """``{"seed", "epoch", "batches"}``: where the current epoch stands."""
        if not self.resumable:
            return {"resumable": False}
        return {"seed": self.seed, "epoch": int(self.sampler.epoch), "batches": self.batches_yielded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue after ``state["batches"]`` batches of ``state["epoch"]`` (the next epoch if complete)."""
        if not self.resumable or not state.get("resumable", True):
            log.warning("training loader state not restored: the loader or the checkpoint is not resumable")
            return
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if batches >= len(self):
            epoch, batches = epoch + 1, 0
        self.seed = self.sampler.seed = int(state["seed"])
        self.sampler.set_epoch(epoch)
        # the skip only applies to its epoch: if Lightning starts the next one (an epoch cut short by
        # limit_train_batches), nothing is skipped
        self.sampler.skip = (epoch, batches * self.batch_size)  # type: ignore[operator]
        self.skip = (epoch, batches)
        log.info("training data resumes at epoch %d after %d batch(es)", epoch, batches)
