"""CVQ-VAE online re-initialisation of dead codes (Zheng & Vedaldi, ICCV 2023).

Codes that the encoder never selects get no codebook-loss gradient and stay dead. CVQ-VAE
keeps a running estimate ``p`` of how often each code is used and, at every training
forward, pulls rarely used codes towards *anchors*, features of the current batch:

    p     <- decay * p + (1 - decay) * freq          (freq: this batch's code histogram / N)
    alpha  = 1 - exp(-p * K * 10 / (1 - decay) - 1e-3)
    E     <- alpha * E + (1 - alpha) * anchors

A code used at its fair share 1/K has ``alpha`` ~ 1 and does not move; a dead code is
replaced by its anchor. The anchor of code k is the batch feature nearest to it.

Across ranks the frequencies are global (histograms and counts all-reduced). Anchors are
either each rank's nearest feature, averaged over ranks (``sync=False``, cheap), or the
nearest feature among the features of all ranks (``sync=True``, all-gathers the features,
as the reference does for Cluster).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from vq.core.config import Config
from vq.core.distributed import all_gather_cat, all_reduce_
from vq.tokenizers.quantizers.search import DEFAULT_CHUNK_ROWS, Distance, nearest_codes
from vq.tokenizers.quantizers.statistics import code_counts


class CVQConfig(Config):
    """Dead-code re-initialisation (CVQ-VAE)."""

    decay: float = 0.99
    """Decay of the running code-usage estimate; also scales the revival rate ``alpha``."""
    anchor: Literal["nearest"] = "nearest"
    """Anchor of a code: the batch feature nearest to it."""
    sync: bool = False
    """Choose anchors among the features of all ranks (all-gather) instead of averaging
    the per-rank nearest features."""


class DeadCodeReviver(nn.Module):
    """Keeps the code-usage estimate (a checkpointed buffer) and revives unused codes."""

    usage: Tensor

    def __init__(self, num_codes: int, cfg: CVQConfig) -> None:
        super().__init__()
        if not 0.0 < cfg.decay < 1.0:
            raise ValueError(f"cvq.decay must lie in (0, 1), got {cfg.decay}")
        self.num_codes = num_codes
        self.cfg = cfg
        self.register_buffer("usage", torch.zeros(num_codes))  # (K,) running frequency p

    def keep_rate(self) -> Tensor:
        """alpha (K,): how much of its current value each code keeps."""
        rate = self.usage * (self.num_codes * 10.0 / (1.0 - self.cfg.decay)) + 1e-3
        return 1.0 - torch.exp(-rate)

    @torch.no_grad()
    def update_usage(self, indices: Tensor) -> None:
        """Fold this step's global code frequencies (from ``indices`` (N,)) into ``usage``."""
        counts = code_counts(indices, self.num_codes).to(self.usage.dtype)
        total = counts.new_full((1,), float(indices.numel()))  # not new_tensor: a blocking copy
        stacked = all_reduce_(torch.cat([counts, total]))  # (K + 1,)
        counts, total = stacked[:-1], stacked[-1]
        frequency = counts / total.clamp_min(1)
        self.usage.mul_(self.cfg.decay).add_(frequency, alpha=1.0 - self.cfg.decay)

    @torch.no_grad()
    def anchors(
        self,
        x: Tensor,
        codebook: Tensor,
        distance: Distance,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        local_code_rows: Tensor | None = None,
    ) -> Tensor:
        """Anchor (K, D) of every code among the features ``x`` (N, D).

        ``local_code_rows`` (K,), the nearest row of ``x`` to each code, may be passed when
        the caller's search already computed it (``sync=False`` only).
        """
        if self.cfg.sync:
            features = all_gather_cat(x)  # (N_total, D)
            rows = nearest_codes(features, codebook, distance, chunk_rows, True).code_rows
            return features[rows]
        if local_code_rows is None:
            local_code_rows = nearest_codes(x, codebook, distance, chunk_rows, True).code_rows
        return all_reduce_(x[local_code_rows].clone(), "mean")  # (K, D)

    @torch.no_grad()
    def revive_(self, codebook: Tensor, anchors: Tensor) -> None:
        """E <- alpha * E + (1 - alpha) * anchors, in place on ``codebook`` (K, D)."""
        alpha = self.keep_rate().unsqueeze(1).to(codebook.dtype)  # (K, 1)
        codebook.mul_(alpha).add_((1.0 - alpha) * anchors.to(codebook.dtype))

    def extra_repr(self) -> str:
        return f"num_codes={self.num_codes}, decay={self.cfg.decay}, sync={self.cfg.sync}"
