"""Two gloo ranks give the same codebook updates as one process on the concatenated batch."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from vq.core.testing import run_distributed
from vq.tokenizers.quantizers import (
    CodebookHistogram,
    VectorQuantizer,
    VectorQuantizerConfig,
)

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

K, D = 16, 4
# Ranks hold different batch sizes (3 and 2 images), as in the last batch of an epoch.
RANK_IMAGES = [slice(0, 3), slice(3, 5)]

CONFIGS = {
    "ema": VectorQuantizerConfig(
        num_codes=K, dim=D, distance="cosine", normalize=True, update="ema", commitment_weight=1.0
    ),
    "kmeans": VectorQuantizerConfig(
        num_codes=K, dim=D, distance="cosine", normalize=True, init="kmeans", kmeans_iterations=4
    ),
    "cvq_sync": VectorQuantizerConfig.preset("cluster", K, D),
    "cvq_local": VectorQuantizerConfig.preset("cvqvae", K, D),
}


def features() -> torch.Tensor:
    return torch.randn(5, D, 3, 3, generator=torch.Generator().manual_seed(0))  # (B, D, h, w)


def initial_codebook() -> torch.Tensor:
    return torch.randn(K, D, generator=torch.Generator().manual_seed(1))


def one_training_step(z: torch.Tensor) -> dict[str, Any]:
    """Codebooks (and CVQ usage, statistics) after one training forward of each quantizer."""
    results: dict[str, Any] = {}
    for name, cfg in CONFIGS.items():
        q = VectorQuantizer(cfg)
        if cfg.init == "uniform":
            with torch.no_grad():
                q.codebook.copy_(initial_codebook())
        torch.manual_seed(0)  # the k-means seeds come from rank 0's global generator
        out = q(z)
        results[name] = q.codebook.detach().clone()
        if q.reviver is not None:
            results[name + "_usage"] = q.reviver.usage.clone()
        if name == "cvq_local":
            results["statistics"] = out.statistics
            results["histogram"] = CodebookHistogram(K)
            results["histogram"].update(out.indices)
            results["histogram"] = results["histogram"].all_reduce().counts
    return results


def rank_worker() -> bytes:
    # Serialised: tensors sent through a multiprocessing queue share file descriptors with a
    # process that is about to exit.
    buffer = io.BytesIO()
    torch.save(one_training_step(features()[RANK_IMAGES[dist.get_rank()]]), buffer)
    return buffer.getvalue()


def import_root() -> str:
    """The folder from which this module's ``__name__`` imports.

    pytest (``--import-mode=importlib``) names this module after its path relative to the
    root dir (``packages.tokenizers.tests...``); spawned ranks unpickle ``rank_worker`` by
    that name, so that folder must be on their ``sys.path``.
    """
    return str(Path(__file__).resolve().parents[__name__.count(".")])


@pytest.fixture(scope="module")
def ranks() -> list[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(import_root())  # inherited by the spawned processes
        results = run_distributed(rank_worker, 2)
    return [torch.load(io.BytesIO(r), weights_only=True) for r in results]


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    return one_training_step(features())


@pytest.mark.parametrize("name", ["ema", "kmeans", "cvq_sync", "cvq_sync_usage", "cvq_local_usage"])
def test_updates_equal_one_process_on_the_whole_batch(
    ranks: list[dict[str, Any]], single: dict[str, Any], name: str
) -> None:
    for result in ranks:
        torch.testing.assert_close(result[name], single[name])


def test_statistics_cover_all_ranks(ranks: list[dict[str, Any]], single: dict[str, Any]) -> None:
    for result in ranks:
        assert torch.equal(result["histogram"], single["histogram"])
        for key, value in single["statistics"].items():
            torch.testing.assert_close(result["statistics"][key], value)


def test_local_cvq_anchors_are_averaged_over_ranks(ranks: list[dict[str, Any]]) -> None:
    # Without sync each rank picks the nearest of its own features, and the anchors of the
    # ranks are averaged: recompute that directly.
    codebook = initial_codebook()
    z = features()
    rows = [z[s].permute(0, 2, 3, 1).reshape(-1, D) for s in RANK_IMAGES]  # per rank (N_r, D)
    anchors = torch.stack([x[torch.cdist(x, codebook).argmin(0)] for x in rows]).mean(0)
    everything = torch.cat(rows)
    frequency = torch.bincount(torch.cdist(everything, codebook).argmin(1), minlength=K)
    usage = 0.01 * frequency.float() / len(everything)
    alpha = (1 - torch.exp(-usage * K * 10 / 0.01 - 1e-3))[:, None]
    expected = alpha * codebook + (1 - alpha) * anchors
    for result in ranks:
        torch.testing.assert_close(result["cvq_local"], expected)
