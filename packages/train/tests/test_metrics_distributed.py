"""Evaluation state across two gloo ranks with a padded DistributedSampler: feature rows come
back once each, in dataset order, and codebook counts are summed over ranks exactly once."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from vq.core.testing import run_distributed
from vq.train.metrics import CodebookHistogram, FeatureAccumulator, codebook_metrics

NUM_SAMPLES = 7  # two ranks: rank 1 receives one padding duplicate
DIM = 4
NUM_CODES = 6


def _features() -> torch.Tensor:
    return torch.randn(NUM_SAMPLES, DIM, generator=torch.Generator().manual_seed(0))  # (N, D)


def _worker() -> dict[str, Any]:
    """One rank: feed its sampler share in batches of 2, with and without indices."""
    from torch.utils.data import DistributedSampler

    from vq.core.distributed import rank, world_size

    features = _features()
    out: dict[str, Any] = {}
    for shuffle in (False, True):
        sampler = DistributedSampler(
            range(NUM_SAMPLES), num_replicas=world_size(), rank=rank(), shuffle=shuffle, seed=3
        )
        indices = torch.tensor(list(sampler))
        by_index, by_position = FeatureAccumulator(NUM_SAMPLES), FeatureAccumulator(NUM_SAMPLES)
        for batch in indices.split(2):
            by_index.update({"features": features[batch]}, index=batch)
            by_position.update({"features": features[batch]})
        out[f"by_index_shuffle={shuffle}"] = by_index.gather()["features"]
        if not shuffle:  # the positional contract holds only for an unshuffled sampler
            out["by_position"] = by_position.gather()["features"]

    # Rank 0 sees codes [0, 0, 1], rank 1 sees [1, 2, 2, 2]: together 2x0, 2x1, 3x2.
    histogram = CodebookHistogram(NUM_CODES)
    histogram.update(torch.tensor([[0, 0, 1]]) if rank() == 0 else torch.tensor([1, 2, 2, 2]))
    out["codebook"] = codebook_metrics(histogram)
    out["codebook_again"] = codebook_metrics(histogram)  # must not count anything twice
    out["local_total"] = histogram.total
    return out


@pytest.fixture(scope="module")
def ranks() -> list[dict[str, Any]]:
    return run_distributed(_worker, 2)


@pytest.mark.slow
@pytest.mark.distributed
def test_feature_rows_once_each_in_dataset_order(ranks):
    for result in ranks:
        for key in ("by_index_shuffle=False", "by_index_shuffle=True", "by_position"):
            assert torch.equal(result[key], _features()), key


@pytest.mark.slow
@pytest.mark.distributed
def test_codebook_counts_summed_over_ranks_once(ranks):
    p = torch.tensor([2, 2, 3], dtype=torch.float64) / 7
    entropy = float(-(p * p.log()).sum())
    for result in ranks:
        assert result["codebook"] == result["codebook_again"]
        assert result["codebook"]["codebook_usage"] == pytest.approx(3 / NUM_CODES)
        assert result["codebook"]["codebook_entropy"] == pytest.approx(entropy, rel=1e-6)
        assert result["codebook"]["codebook_perplexity"] == pytest.approx(
            torch.tensor(entropy).exp().item(), rel=1e-6
        )
    assert [r["local_total"] for r in ranks] == [3, 4]
