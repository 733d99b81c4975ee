"""Nearest-code search in bounded memory.

``torch.cdist(x, E).argmin(1)`` materialises the whole (N, K) distance matrix: for the
65536 positions of a 256-image batch and 8192 codes that is 2 GiB in fp32, plus the
temporaries of the square root. Here rows are processed in chunks of ``chunk_rows``, so at
most (chunk_rows, K) distances exist at a time, and each chunk is one matmul:

    l2:      |x - e|^2 = |x|^2 - 2 x.e + |e|^2
    cosine:  1 - x.e / (|x| |e|)

The codebook terms (|e|^2, or the normalised codebook) are computed once per call, not once
per chunk, and every chunk writes into the same preallocated (chunk_rows, K) buffer. Distances are always computed in fp32 (fp64 inputs stay fp64), also under
autocast: bf16 distances would pick wrong codes whenever two codes are close.

Besides the nearest code of every row, the search can also return the nearest *row* of
every code (a running minimum over chunks): CVQ-VAE uses it to pick the anchor features
that revive dead codes, without a second pass over the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from vq.core.amp import fp32

Distance = Literal["l2", "cosine"]

DEFAULT_CHUNK_ROWS = 4096


@dataclass
class SearchResult:
    """Nearest codes of rows and, when asked for, nearest rows of codes.

    Distances are squared Euclidean for ``l2`` and ``1 - cos`` for ``cosine``.
    """

    indices: Tensor  # (N,) int64, nearest code of each row
    distances: Tensor  # (N,) distance of each row to its code
    code_rows: Tensor | None = None  # (K,) int64, nearest row of each code
    code_distances: Tensor | None = None  # (K,) distance of each code to that row


@fp32
def nearest_codes(
    x: Tensor,
    codebook: Tensor,
    distance: Distance = "l2",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    with_code_rows: bool = False,
) -> SearchResult:
    """Nearest code of each row of ``x`` (N, D) in ``codebook`` (K, D).

    Ties go to the lowest code index (and, for ``code_rows``, to the lowest row index), as
    with ``argmin``. No gradient flows through the search.
    """
    if x.ndim != 2 or codebook.ndim != 2 or x.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"expected (N, D) and (K, D), got {tuple(x.shape)}, {tuple(codebook.shape)}"
        )
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    x, codebook = x.detach(), codebook.detach()
    n, k = x.shape[0], codebook.shape[0]
    # Every chunk computes scores to maximise; distance = offset - score per row, with
    #   l2:     score = 2 x.e - |e|^2,  offset = |x|^2
    #   cosine: score = cos(x, e),      offset = 1
    if distance == "l2":
        codes_t = codebook.t().contiguous()  # (D, K)
        neg_code_sq = codebook.pow(2).sum(1).neg_()  # (K,) -|e|^2
    elif distance == "cosine":
        codes_t = F.normalize(codebook, dim=1).t().contiguous()  # (D, K)
    else:
        raise ValueError(f"unknown distance {distance!r}; expected 'l2' or 'cosine'")

    indices = torch.empty(n, dtype=torch.long, device=x.device)
    distances = torch.empty(n, dtype=x.dtype, device=x.device)
    if with_code_rows:
        code_rows = torch.zeros(k, dtype=torch.long, device=x.device)
        code_best = torch.full((k,), float("-inf"), dtype=x.dtype, device=x.device)
    # The one (chunk, K) allocation of the call, reused by every chunk.
    buffer = x.new_empty(max(min(chunk_rows, n), 1), k)

    for start in range(0, n, chunk_rows):
        rows = x[start : start + chunk_rows]  # (n_c, D)
        end = start + rows.shape[0]
        scores = buffer[: rows.shape[0]]  # (n_c, K)
        if distance == "l2":
            offset = rows.pow(2).sum(1)  # (n_c,)
            torch.addmm(neg_code_sq, rows, codes_t, alpha=2.0, out=scores)
        else:
            offset = rows.new_ones(rows.shape[0])
            torch.mm(F.normalize(rows, dim=1), codes_t, out=scores)
        best, best_index = scores.max(dim=1)  # (n_c,): the first maximum on ties
        indices[start:end] = best_index
        distances[start:end] = offset - best

        if with_code_rows:
            scores.sub_(offset.unsqueeze(1))  # -distance, comparable across rows
            chunk_best, chunk_row = scores.max(dim=0)  # (K,)
            better = chunk_best > code_best  # strict: earlier rows win ties
            code_best = torch.where(better, chunk_best, code_best)
            code_rows = torch.where(better, chunk_row + start, code_rows)

    if distance == "l2":
        distances.clamp_min_(0)  # rounding can make |x - e|^2 slightly negative
    if not with_code_rows:
        return SearchResult(indices, distances)
    code_distances = code_best.neg()
    if distance == "l2":
        code_distances.clamp_min_(0)
    return SearchResult(indices, distances, code_rows, code_distances)
