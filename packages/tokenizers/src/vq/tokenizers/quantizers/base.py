"""What every quantizer returns and promises.

A quantizer maps a feature map ``z`` (B, D, h, w) to the nearest entries of a finite set of
codes. The tokenizer models, their trainers and the downstream encode/decode API only rely on
this module: ``forward`` for training, ``indices`` (encode, the same ids as ``forward``)
and ``codes`` (decode) for tokenisation. Neither ``indices`` nor ``codes`` changes state or
talks to other ranks, so they are safe to call on one rank alone (visualisation, tokenising
a data set).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    """The result of one quantizer forward pass.

    Attributes:
        quantized: (B, D, h, w) the codes, carrying the straight-through gradient to ``z``.
        indices: (B, h, w) int64 code ids.
        losses: named scalar losses, already weighted, so the quantizer loss is
            ``sum(losses.values())``; empty when the quantizer has no loss (FSQ).
        statistics: scalar statistics of the batch (codebook usage, entropy, perplexity),
            computed from the histogram of every rank.
    """

    quantized: Tensor
    indices: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    statistics: dict[str, Tensor] = field(default_factory=dict)

    def loss(self) -> Tensor:
        """The sum of ``losses`` (a zero scalar on ``quantized``'s device when there is none)."""
        if not self.losses:
            return torch.zeros((), device=self.quantized.device)
        return torch.stack(list(self.losses.values())).sum()


class Quantizer(nn.Module, abc.ABC):
    """Base of every quantizer: ``num_codes`` codes of dimension ``dim``."""

    num_codes: int
    dim: int

    @abc.abstractmethod
    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize ``z`` (B, D, h, w); updates codebook state when ``self.training``.

        The statistics are all-reduced, so with a process group every rank must call
        ``forward`` together (use ``indices``/``codes`` for work done on one rank only).
        """

    @abc.abstractmethod
    def codes(self, indices: Tensor) -> Tensor:
        """(B, h, w) code ids -> (B, D, h, w) codes in the space ``z`` is compared in."""

    @abc.abstractmethod
    def indices(self, z: Tensor) -> Tensor:
        """(B, D, h, w) features, as ``forward`` takes them -> (B, h, w) code ids.

        Equal to ``forward(z).indices`` for the same state (``forward`` searches before it
        updates the codebook): both go through one private function, so the tokens of
        encoding can never drift from the tokens the model was trained on.
        """

    def _check_input(self, z: Tensor) -> None:
        if z.ndim != 4 or z.shape[1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} expects (B, {self.dim}, h, w) inputs, got {tuple(z.shape)}"
            )


def flatten_map(z: Tensor) -> Tensor:
    """(B, D, h, w) -> (B*h*w, D), one row per position."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def unflatten_map(rows: Tensor, shape: torch.Size) -> Tensor:
    """(B*h*w, D) -> (B, D, h, w) for a map of ``shape`` (B, *, h, w)."""
    b, _, h, w = shape
    return rows.reshape(b, h, w, -1).permute(0, 3, 1, 2)
