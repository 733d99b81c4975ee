"""Finite scalar quantization (Mentzer et al., 2023), as in the reference's FSQ tokenizer.

Each of the D channels is squashed into a bounded range and rounded to one of L_i levels;
the codebook is the implicit grid of prod(L_i) points, so there is nothing to learn, no
codebook loss and no dead code. Per channel with L levels (eps = 1e-3):

    m = (L - 1)(1 - eps),   o = (L - 1) mod 2          (o = 1 shifts even L onto the grid)
    b = (tanh(x + atanh(o / m)) * m - o) / 2           bounded value, in (-L/2, L/2)
    q = round(b)  (straight-through)                   integer in [-(L//2), (L-1)//2]
    code  = q / (L // 2)                               in [-1, 1] (L odd), [-1, 1 - 2/L] (L even)
    digit = q + L // 2                                 in [0, L)

The code id is the mixed-radix number of the digits with the FIRST channel least
significant: id = d_0 + L_0 d_1 + L_0 L_1 d_2 + ...
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor

from vq.core.amp import float32, fp32_region
from vq.core.config import Config
from vq.tokenizers.quantizers.base import Quantizer, QuantizerOutput
from vq.tokenizers.quantizers.statistics import codebook_statistics

EPS = 1e-3

# Levels of the reference's FSQ tokenizers, by codebook size.
FSQ_LEVELS: dict[int, list[int]] = {
    8000: [8, 8, 5, 5, 5],
    64000: [8, 8, 8, 5, 5, 5],
}


def fsq_levels(codebook_size: int) -> list[int]:
    """Levels for a codebook size of the reference (8000 -> [8, 8, 5, 5, 5], 64000 -> ...)."""
    if codebook_size not in FSQ_LEVELS:
        raise ValueError(
            f"no FSQ levels for codebook size {codebook_size}; known: {sorted(FSQ_LEVELS)} "
            "(or give the levels explicitly)"
        )
    return list(FSQ_LEVELS[codebook_size])


class FSQConfig(Config):
    """FSQ with ``levels[i]`` levels on channel i (the input has ``len(levels)`` channels)."""

    kind: Literal["fsq"] = "fsq"
    levels: list[int] = Field(min_length=1)

    @field_validator("levels")
    @classmethod
    def _at_least_three(cls, levels: list[int]) -> list[int]:
        # With L = 2 the offset o / m = 1 / (1 - eps) exceeds 1 and atanh is undefined.
        if any(level < 3 for level in levels):
            raise ValueError(f"every channel needs at least 3 levels, got {levels}")
        return levels

    @classmethod
    def for_codebook_size(cls, codebook_size: int) -> FSQConfig:
        return cls(levels=fsq_levels(codebook_size))


class FSQ(Quantizer):
    """Finite scalar quantizer; see the module docstring for the exact maps."""

    levels: Tensor  # (D,) int64
    basis: Tensor  # (D,) int64 place values, first channel least significant

    def __init__(self, cfg: FSQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.dim = len(cfg.levels)
        self.num_codes = math.prod(cfg.levels)
        levels = torch.tensor(cfg.levels, dtype=torch.long)
        basis = torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0)
        # Constants, rebuilt from the config: not part of checkpoints.
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("basis", basis, persistent=False)

    def _per_channel(self, values: Tensor) -> Tensor:
        """(D,) -> (1, D, 1, 1), to broadcast over (B, D, h, w)."""
        return values.view(1, -1, 1, 1)

    def bound(self, z: Tensor) -> Tensor:
        """(B, D, h, w) -> bounded values whose rounding gives the integer levels."""
        levels = self._per_channel(self.levels).to(z.dtype)
        m = (levels - 1) * (1 - EPS)
        o = torch.remainder(levels - 1, 2)
        return (torch.tanh(z + torch.atanh(o / m)) * m - o) / 2

    def half_width(self, dtype: torch.dtype) -> Tensor:
        """L // 2 per channel, (1, D, 1, 1)."""
        return self._per_channel(torch.div(self.levels, 2, rounding_mode="floor")).to(dtype)

    def _round(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The one map from features to levels, shared by ``forward`` and ``indices``.

        (B, D, h, w) -> fp32 rounded levels q with the straight-through gradient to ``z``,
        and the (B, D, h, w) int64 digits q + L // 2 in [0, L).
        """
        with fp32_region():
            bounded = self.bound(float32(z))  # (B, D, h, w)
            rounded = bounded + (bounded.round() - bounded).detach()  # straight-through
            digits = (rounded.detach() + self.half_width(rounded.dtype)).long()
        return rounded, digits

    def forward(self, z: Tensor) -> QuantizerOutput:
        self._check_input(z)
        rounded, digits = self._round(z)
        quantized = rounded / self.half_width(rounded.dtype)  # (B, D, h, w) in [-1, 1]
        indices = self._digits_to_indices(digits)
        return QuantizerOutput(
            quantized=quantized.to(z.dtype),
            indices=indices,
            losses={},
            statistics=codebook_statistics(indices, self.num_codes),
        )

    def _digits_to_indices(self, digits: Tensor) -> Tensor:
        """(B, D, h, w) digits -> (B, h, w) ids."""
        return (digits * self._per_channel(self.basis)).sum(1)

    def codes(self, indices: Tensor) -> Tensor:
        digits = (indices.unsqueeze(1) // self._per_channel(self.basis)) % self._per_channel(
            self.levels
        )  # (B, D, h, w)
        return digits.float() / self.half_width(torch.float32) - 1.0

    @torch.no_grad()
    def indices(self, z: Tensor) -> Tensor:
        """Ids of the features ``z`` (B, D, h, w): bounded and rounded exactly as ``forward``
        does (an earlier version rounded ``z`` without the bound, so its tokens were wrong)."""
        self._check_input(z)
        return self._digits_to_indices(self._round(z)[1])

    def extra_repr(self) -> str:
        return f"levels={self.cfg.levels}, num_codes={self.num_codes}"
