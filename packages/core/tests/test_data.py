"""Resumable distributed sampling, per-sample seeds and batch-size division."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from vq.core.data import (
    LoaderConfig,
    ResumableSampler,
    SeededDataset,
    build_loader,
    per_rank_batch_size,
    sample_seed,
)
from vq.core.errors import UserError


def test_shuffle_is_deterministic_per_seed_and_epoch() -> None:
    a = ResumableSampler(50, seed=3, rank=0, world=1)
    b = ResumableSampler(50, seed=3, rank=0, world=1)
    assert a.indices(0) == b.indices(0)
    assert a.indices(0) != a.indices(1)
    assert a.indices(0) != ResumableSampler(50, seed=4, rank=0, world=1).indices(0)
    assert sorted(a.indices(2)) == list(range(50))


def test_ranks_share_each_epoch_without_overlap() -> None:
    shares = [ResumableSampler(23, seed=1, rank=r, world=3).indices(5) for r in range(3)]
    assert all(len(s) == 7 for s in shares)  # drop_last: 21 of 23
    assert len(set().union(*shares)) == 21
    padded = [
        ResumableSampler(23, seed=1, rank=r, world=3, drop_last=False).indices(5) for r in range(3)
    ]
    assert all(len(s) == 8 for s in padded)  # padded with duplicates to 24
    assert set().union(*padded) == set(range(23))


def test_start_skips_without_reading_and_yields_per_sample_seeds() -> None:
    sampler = ResumableSampler(40, seed=7, rank=1, world=2)
    full = list(sampler.indices(3))
    sampler.start(3, skip=5)
    resumed = list(sampler)
    assert [i for i, _ in resumed] == full[5:]
    assert all(s == sample_seed(7, 3, i) for i, s in resumed)
    assert len({s for _, s in resumed}) == len(resumed)
    assert [i for i, _ in sampler] == full  # the skip applied to one pass only


class Noisy(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.rand(3) + i


def test_seeded_items_are_reproducible_and_leave_the_caller_rng_alone() -> None:
    dataset = SeededDataset(Noisy())
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = dataset[(4, 123)]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(dataset[(4, 123)], first)
    assert not torch.equal(dataset[(4, 124)], first)


def test_seeded_items_equal_torch_manual_seed_and_leave_accelerator_generators_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The item is what torch.manual_seed(seed) would give (checkpointed runs keep their
    # augmentations), but no accelerator generator is reseeded: on a GPU with workers=0 that
    # would reset the training stream at every sample (fork_rng restores the CPU only).
    torch.manual_seed(123)
    expected = Noisy()[4]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an accelerator generator was seeded while loading")

    for module in (torch.cuda, torch.xpu, torch.mtia):
        monkeypatch.setattr(module, "manual_seed_all", refuse)
    assert torch.equal(SeededDataset(Noisy())[(4, 123)], expected)


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_do_not_depend_on_worker_count(workers: int) -> None:
    config = LoaderConfig(batch_size=4, workers=workers, persistent_workers=False)
    loader, sampler = build_loader(Noisy(), config, seed=5, device=torch.device("cpu"))
    sampler.start(1)
    batches = torch.cat(list(loader))
    reference, reference_sampler = build_loader(
        Noisy(), config.model_copy(update={"workers": 0}), seed=5, device=torch.device("cpu")
    )
    reference_sampler.start(1)
    assert torch.equal(batches, torch.cat(list(reference)))


def test_global_batch_is_divided_or_a_clear_error() -> None:
    assert per_rank_batch_size(LoaderConfig(batch_size=96), 4) == 24
    assert per_rank_batch_size(LoaderConfig(batch_size=96, batch_size_is_global=False), 4) == 96
    with pytest.raises(UserError, match="not divisible by the 5 processes"):
        per_rank_batch_size(LoaderConfig(batch_size=96), 5)
