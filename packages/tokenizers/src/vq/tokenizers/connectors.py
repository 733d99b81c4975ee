"""Connectors: the small maps between an encoder, a quantizer and a decoder.

A tokenizer runs ``encoder -> post_encode -> quantizer -> pre_decode -> decoder``; the two
connectors adapt channel counts (e.g. VQGAN's 1x1 convs 256 -> codebook dim and back, or
FSQ's two 1x1 convs 256 -> 256 -> levels). A connector is described by the list of widths
it passes through, so a chain reads as what it does: ``channels=(256, 256, 5)``.
"""

from __future__ import annotations

import itertools
from typing import Literal, Self

from pydantic import Field, model_validator
from torch import Tensor, nn

from vq.core.config import Config


class ConnectorConfig(Config):
    """``kind="conv"``: one 1x1 conv per consecutive pair of ``channels``.
    ``kind="identity"``: nothing (all ``channels`` equal)."""

    kind: Literal["conv", "identity"] = "conv"
    channels: tuple[int, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if any(c <= 0 for c in self.channels):
            raise ValueError(f"connector channels must be positive, got {self.channels}")
        if self.kind == "identity" and len(set(self.channels)) != 1:
            raise ValueError(f"an identity connector cannot change channels {self.channels}")
        if self.kind == "conv" and len(self.channels) < 2:
            raise ValueError("a conv connector needs at least (in_channels, out_channels)")
        return self

    @property
    def in_channels(self) -> int:
        return self.channels[0]

    @property
    def out_channels(self) -> int:
        return self.channels[-1]


class IdentityConnector(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.in_channels = self.out_channels = channels

    def forward(self, x: Tensor) -> Tensor:  # (B, C, h, w) -> (B, C, h, w)
        return x


class ConvConnector(nn.Module):
    """A 1x1 convolution: a per-position linear map of channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, h, w) -> (B, C_out, h, w)
        return self.conv(x)


class ChainConnector(nn.Sequential):
    """Connectors applied one after the other (no nonlinearity in between, as FSQ's)."""

    def __init__(self, *connectors: nn.Module) -> None:
        super().__init__(*connectors)
        self.in_channels = connectors[0].in_channels
        self.out_channels = connectors[-1].out_channels


def build_connector(config: ConnectorConfig) -> nn.Module:
    """The module of ``config``; it carries ``in_channels`` and ``out_channels``."""
    if config.kind == "identity":
        return IdentityConnector(config.in_channels)
    convs = [ConvConnector(a, b) for a, b in itertools.pairwise(config.channels)]
    return convs[0] if len(convs) == 1 else ChainConnector(*convs)


__all__ = [
    "ChainConnector",
    "ConnectorConfig",
    "ConvConnector",
    "IdentityConnector",
    "build_connector",
]
