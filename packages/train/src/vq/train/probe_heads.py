"""The classifiers of the probe trainer (``vq.train.trainers.probe``) over frozen tokenizer
features: what the probe learns, and all that its checkpoints hold.

``Probe`` takes either code ids (B, h, w), which it embeds with a table it learns (the
``codes`` features), or float features (B, D, h, w) (``quantized``, ``pre_quant``), and
gives class logits (B, C) through one of two heads:

* ``LinearHead`` (the MAE linear-probe head): the mean over the h*w tokens, batch norm
  without affine parameters (eps 1e-6), then one linear layer initialised with a truncated
  normal of std 0.01 and zero bias. Frozen features come from a fixed distribution, so the
  norm's running statistics are the plain average over every training batch (momentum
  None), right after a few steps as after many; embeddings the probe learns move, so
  theirs are an exponential average (momentum 0.1);
* ``AttentiveHead``: one learned query cross-attends over the (layer-normed) tokens with
  ``heads`` heads of total width ``width`` (keys and values projected from D), then layer
  norm and a linear layer. Unlike the mean it can weigh the tokens that matter.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from vq.core.config import Config

HEAD_INIT_STD = 0.01  # the linear layer's truncated-normal init (MAE, BEiT)
BATCH_NORM_EPS = 1e-6
QUERY_INIT_STD = 0.02


class HeadConfig(Config):
    kind: Literal["linear", "attentive"] = "linear"
    width: int = Field(256, ge=1)
    """Attentive head only: width of the query and of the attention."""
    heads: int = Field(8, ge=1)
    """Attentive head only: attention heads; must divide ``width``."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> HeadConfig:
        if self.kind == "attentive" and self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of heads {self.heads}")
        return self


def _init_linear(layer: nn.Linear) -> nn.Linear:
    nn.init.trunc_normal_(layer.weight, std=HEAD_INIT_STD)
    nn.init.zeros_(layer.bias)
    return layer


class LinearHead(nn.Module):
    """(B, N, D) tokens -> (B, C) logits: mean over N, BatchNorm1d without affine, linear."""

    def __init__(self, dim: int, num_classes: int, stationary: bool = True) -> None:
        super().__init__()
        momentum = None if stationary else 0.1  # None: the cumulative average
        self.norm = nn.BatchNorm1d(dim, affine=False, eps=BATCH_NORM_EPS, momentum=momentum)
        self.linear = _init_linear(nn.Linear(dim, num_classes))

    def forward(self, tokens: Tensor) -> Tensor:  # (B, N, D) -> (B, C)
        return self.linear(self.norm(tokens.mean(1)))  # (B, D) -> (B, C)


class AttentiveHead(nn.Module):
    """(B, N, D) tokens -> (B, C) logits: a learned query cross-attends over the tokens."""

    def __init__(self, dim: int, num_classes: int, width: int, heads: int) -> None:
        super().__init__()
        self.token_norm = nn.LayerNorm(dim)
        self.query = nn.Parameter(torch.empty(1, 1, width))
        nn.init.trunc_normal_(self.query, std=QUERY_INIT_STD)
        self.attention = nn.MultiheadAttention(width, heads, kdim=dim, vdim=dim, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.linear = _init_linear(nn.Linear(width, num_classes))

    def forward(self, tokens: Tensor) -> Tensor:  # (B, N, D) -> (B, C)
        tokens = self.token_norm(tokens)
        query = self.query.expand(tokens.shape[0], -1, -1)  # (B, 1, W)
        pooled, _ = self.attention(query, tokens, tokens, need_weights=False)  # (B, 1, W)
        return self.linear(self.norm(pooled[:, 0]))  # (B, W) -> (B, C)


class Probe(nn.Module):
    """Code ids (B, h, w) or features (B, D, h, w) -> class logits (B, C).

    ``num_codes`` set: the input is ids, embedded into ``dim`` by a learned table.
    """

    def __init__(
        self, head: HeadConfig, dim: int, num_classes: int, num_codes: int | None = None
    ) -> None:
        super().__init__()
        self.embed = None if num_codes is None else nn.Embedding(num_codes, dim)
        if head.kind == "linear":
            self.head: nn.Module = LinearHead(dim, num_classes, stationary=self.embed is None)
        else:
            self.head = AttentiveHead(dim, num_classes, head.width, head.heads)

    def forward(self, features: Tensor) -> Tensor:
        if self.embed is not None:
            tokens = self.embed(features.flatten(1))  # (B, h, w) -> (B, h*w, D)
        else:
            tokens = features.flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, h*w, D)
        return self.head(tokens)  # (B, C)
