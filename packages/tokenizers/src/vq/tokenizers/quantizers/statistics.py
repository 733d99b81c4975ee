"""Codebook statistics: how many codes are used, and how evenly.

All three numbers come from the histogram of code ids over every rank:

* ``usage``: the fraction of codes used at least once;
* ``entropy``: Shannon entropy of the code distribution, in nats (at most ln K; this is
  what the reference logs as "ppl");
* ``perplexity``: exp(entropy), the effective number of equally used codes (at most K).

``codebook_statistics`` gives them for one batch (the quantizers report it every forward);
``CodebookHistogram`` accumulates a whole validation set first, because the usage of one
batch says little about the usage of a codebook of 8192 codes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vq.core.distributed import all_reduce_


def code_counts(indices: Tensor, num_codes: int) -> Tensor:
    """(K,) int64 histogram of the code ids ``indices`` (N,), values in [0, K).

    ``torch.bincount`` on CUDA reads the largest id back to the host to size its output,
    a device sync on every training forward; the size is known, so scatter into it.
    """
    counts = torch.zeros(num_codes, dtype=torch.long, device=indices.device)
    return counts.scatter_add_(0, indices, torch.ones_like(indices))


def _summaries(counts: Tensor, num_codes: int) -> dict[str, Tensor]:
    """usage, entropy (nats) and perplexity of a (K,) histogram, as fp32 scalars."""
    counts = counts.to(torch.float64)
    total = counts.sum()
    p = counts / total.clamp_min(1)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum()  # 0 log 0 = 0
    return {
        "codebook_usage": ((counts > 0).sum() / num_codes).float(),
        "codebook_entropy": entropy.float(),
        "codebook_perplexity": entropy.exp().float(),
    }


@torch.no_grad()
def codebook_statistics(indices: Tensor, num_codes: int) -> dict[str, Tensor]:
    """Usage, entropy and perplexity of ``indices`` (any shape), all-reduced over ranks.

    Every rank must call this (it all-reduces a (K,) histogram).
    """
    counts = code_counts(indices.reshape(-1), num_codes)  # (K,)
    all_reduce_(counts)
    return _summaries(counts, num_codes)


class CodebookHistogram:
    """Counts code ids over many batches, e.g. a whole validation set.

    >>> hist = CodebookHistogram(8192)
    >>> for batch in loader: hist.update(tokenizer.encode(batch))
    >>> hist.all_reduce()  # once, on every rank, before reading the numbers
    >>> hist.usage(), hist.entropy(), hist.perplexity()
    """

    def __init__(self, num_codes: int, device: torch.device | str | None = None) -> None:
        """``device`` holds the counts; with NCCL it must be the rank's CUDA device."""
        self.num_codes = num_codes
        self.counts = torch.zeros(num_codes, dtype=torch.long, device=device)  # (K,)

    def reset(self) -> None:
        self.counts.zero_()

    @torch.no_grad()
    def update(self, indices: Tensor) -> None:
        """Add the ids of ``indices`` (any shape, values in [0, K))."""
        flat = indices.reshape(-1).to(self.counts.device)
        if flat.numel() and (flat.min() < 0 or flat.max() >= self.num_codes):
            raise ValueError(f"code ids must lie in [0, {self.num_codes})")
        self.counts += torch.bincount(flat, minlength=self.num_codes)

    def all_reduce(self) -> CodebookHistogram:
        """Sum the counts of every rank into every rank (call once, on all ranks)."""
        all_reduce_(self.counts)
        return self

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def summaries(self) -> dict[str, Tensor]:
        """``codebook_usage``, ``codebook_entropy`` and ``codebook_perplexity``."""
        return _summaries(self.counts, self.num_codes)

    def usage(self) -> float:
        return float((self.counts > 0).sum()) / self.num_codes

    def entropy(self) -> float:
        return float(self.summaries()["codebook_entropy"])

    def perplexity(self) -> float:
        return float(self.summaries()["codebook_perplexity"])
