"""Distributed, resumable, reproducible data loading.

* ``per_rank_batch_size`` divides a global batch size across ranks (or keeps a per-rank one).
* ``ResumableSampler`` shards a deterministic per-epoch permutation across ranks and can
  start mid-epoch, so a resumed run neither re-reads nor discards the batches it skips.
* A dataset may choose the order of each epoch itself (``epoch_order(epoch, seed, world)``,
  e.g. sharded data read shard by shard); the sampler then splits and resumes that order.
* Every sample is loaded under its own seed derived from (run seed, epoch, index): random
  augmentations are identical whatever the number of workers, the rank that loads the
  sample, or where a run was resumed.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vq.core import distributed
from vq.core.config import Config
from vq.core.errors import UserError
from vq.core.seeding import SEED_MODULUS


class LoaderConfig(Config):
    batch_size: int = 16
    batch_size_is_global: bool = True
    """True: ``batch_size`` is summed over ranks and divided among them (it must divide)."""
    workers: int = 2
    pin_memory: bool = True
    """Only takes effect on CUDA."""
    persistent_workers: bool = True
    prefetch_factor: int = 2
    shuffle: bool = True
    drop_last: bool = True


def per_rank_batch_size(config: LoaderConfig, world_size: int) -> int:
    if not config.batch_size_is_global:
        return config.batch_size
    if config.batch_size % world_size:
        raise UserError(
            f"global batch size {config.batch_size} is not divisible by the {world_size} "
            "processes; change it or set batch_size_is_global=False"
        )
    return config.batch_size // world_size


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed under which sample ``index`` of ``epoch`` is loaded and augmented."""
    return (seed * 0x9E3779B1 + epoch * 0x85EBCA77 + index * 0xC2B2AE3D) % SEED_MODULUS


class ResumableSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, sample_seed)`` for this rank's share of each epoch.

    The permutation of epoch ``e`` comes from a generator seeded with ``seed + e`` (identical
    on every rank); rank ``r`` takes every ``world``-th element starting at ``r``, after
    padding to a multiple of ``world`` (or dropping the tail when ``drop_last``).
    ``start(epoch, skip)`` positions the sampler ``skip`` samples into its share. ``order``,
    when given and not returning None, replaces the permutation of an epoch.
    """

    def __init__(
        self,
        length: int,
        *,
        seed: int,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int | None = None,
        world: int | None = None,
        order: Callable[[int], Sequence[int] | None] | None = None,
    ) -> None:
        self.length = length
        self.order = order
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = distributed.rank() if rank is None else rank
        self.world = distributed.world_size() if world is None else world
        if length < self.world and drop_last:
            raise UserError(f"dataset has {length} samples, fewer than the {self.world} processes")
        self.epoch = 0
        self.skip = 0

    def start(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def indices(self, epoch: int) -> list[int]:
        chosen = self.order(epoch) if self.order is not None else None
        if chosen is not None:
            order = list(chosen)
        elif self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        if self.drop_last:
            order = order[: len(order) - len(order) % self.world]
        else:
            order += order[: (-len(order)) % self.world]
        return order[self.rank :: self.world]

    def __len__(self) -> int:
        """This rank's share of the current epoch (of ``order``'s, when it chooses one)."""
        chosen = self.order(self.epoch) if self.order is not None else None
        length = self.length if chosen is None else len(chosen)
        if self.drop_last:
            return length // self.world
        return -(-length // self.world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = self.epoch, self.skip
        self.skip = 0
        for i in self.indices(epoch)[skip:]:
            yield i, sample_seed(self.seed, epoch, i)


class SeededDataset(Dataset[Any]):
    """Loads item ``(index, seed)`` of ``dataset`` with all RNGs seeded by ``seed``.

    The RNG states of the calling process are restored afterwards, so loading in the main
    process (``workers=0``) does not disturb the training RNG streams. Only the CPU
    generator is seeded: ``torch.manual_seed`` would also reseed every accelerator's
    generator (never restored here, so on a GPU it would reset the training stream each
    sample) and, before CUDA is initialised, formats three stack traces per call to queue
    that seeding: 2.2 of 6.3 ms per item in a profile of the demo (docs/performance.md).
    """

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


def build_loader(
    dataset: Dataset[Any],
    config: LoaderConfig,
    *,
    seed: int,
    device: torch.device,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    train: bool = True,
) -> tuple[DataLoader[Any], ResumableSampler]:
    """A DataLoader over this rank's share of ``dataset`` and its resumable sampler."""
    length = len(dataset)  # type: ignore[arg-type]
    if length == 0:
        raise UserError("the dataset is empty")
    batch = per_rank_batch_size(config, distributed.world_size())
    shuffle = config.shuffle and train
    epoch_order = getattr(dataset, "epoch_order", None) if shuffle else None
    if epoch_order is not None:
        epoch_order = functools.partial(epoch_order, seed=seed, world=distributed.world_size())
    sampler = ResumableSampler(
        length,
        seed=seed,
        shuffle=shuffle,
        drop_last=config.drop_last and train,
        order=epoch_order,
    )
    if train and len(sampler) < batch:
        raise UserError(
            f"each process gets {len(sampler)} samples per epoch, fewer than its batch of {batch}"
        )
    workers = config.workers
    # Every new iterator draws a base seed; from its own generator, not the global RNG, so a
    # run resumed mid-epoch (one extra iterator) keeps the dropout/noise streams of a run
    # that never stopped. Samples are seeded by SeededDataset, so this seed changes nothing.
    loader_rng = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        SeededDataset(dataset),
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=config.pin_memory and device.type == "cuda",
        drop_last=config.drop_last and train,
        persistent_workers=config.persistent_workers and workers > 0,
        prefetch_factor=config.prefetch_factor if workers > 0 else None,
        generator=loader_rng,
    )
    return loader, sampler
