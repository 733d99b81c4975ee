"""k-means for initialising a codebook from the first batch of features (VQ-KD).

A codebook initialised at random in a space the encoder has not learned yet leaves most
codes unused. VQ-KD (like BEiT v2) instead runs a few k-means iterations on the features of
the first training batch, gathered from every rank.

``distributed_kmeans`` gathers, computes on rank 0 and broadcasts, so every rank ends with
the same codebook whatever its random state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vq.core.amp import fp32
from vq.core.distributed import all_gather_cat, broadcast_, is_main
from vq.tokenizers.quantizers.search import DEFAULT_CHUNK_ROWS, Distance, nearest_codes
from vq.tokenizers.quantizers.statistics import code_counts


@fp32
@torch.no_grad()
def kmeans(
    x: Tensor,
    num_codes: int,
    iterations: int = 10,
    distance: Distance = "l2",
    normalize: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Cluster the rows of ``x`` (N, D) into ``num_codes`` centroids (K, D).

    Seeds are K distinct random rows (drawn with replacement when N < K). Each iteration
    assigns rows to their nearest centroid under ``distance`` and moves every centroid to
    the mean of its members; a centroid without members keeps its value. With
    ``normalize`` the means are projected back onto the unit sphere (spherical k-means, for
    l2-normalised features).
    """
    n = x.shape[0]
    if n == 0:
        raise ValueError("k-means needs at least one feature")
    if n >= num_codes:
        seeds = torch.randperm(n, generator=generator, device="cpu")[:num_codes]
    else:
        seeds = torch.randint(n, (num_codes,), generator=generator, device="cpu")
    centroids = x[seeds.to(x.device)].clone()  # (K, D)
    for _ in range(iterations):
        assign = nearest_codes(x, centroids, distance, chunk_rows).indices  # (N,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)  # (K, D)
        counts = code_counts(assign, num_codes)  # (K,)
        means = sums / counts.clamp_min(1).unsqueeze(1).to(sums.dtype)
        if normalize:
            means = F.normalize(means, dim=1)
        centroids = torch.where((counts > 0).unsqueeze(1), means, centroids)
    return centroids


@torch.no_grad()
def distributed_kmeans(
    x: Tensor,
    num_codes: int,
    iterations: int = 10,
    distance: Distance = "l2",
    normalize: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Tensor:
    """``kmeans`` on the rows of every rank (in rank order); the same result on every rank.

    Rank 0 computes, with the global torch random state, and broadcasts the centroids.
    """
    features = all_gather_cat(x.detach().float())  # (N_total, D)
    if is_main():
        centroids = kmeans(features, num_codes, iterations, distance, normalize, chunk_rows)
    else:
        centroids = features.new_empty(num_codes, features.shape[1])
    return broadcast_(centroids.contiguous())
