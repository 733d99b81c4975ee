"""Quantizers: map encoder features (B, D, h, w) to discrete codes and back.

``build_quantizer(cfg)`` turns a ``QuantizerConfig`` (a ``VectorQuantizerConfig`` or an
``FSQConfig``, told apart by ``kind``) into a ``Quantizer``; every quantizer returns a
``QuantizerOutput`` from ``forward`` and offers ``indices(z)`` (the ids ``forward(z)``
gives) and ``codes(indices)``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vq.tokenizers.quantizers.base import Quantizer, QuantizerOutput
from vq.tokenizers.quantizers.cvq import CVQConfig, DeadCodeReviver
from vq.tokenizers.quantizers.fsq import FSQ, FSQ_LEVELS, FSQConfig, fsq_levels
from vq.tokenizers.quantizers.kmeans import distributed_kmeans, kmeans
from vq.tokenizers.quantizers.search import SearchResult, nearest_codes
from vq.tokenizers.quantizers.statistics import CodebookHistogram, codebook_statistics
from vq.tokenizers.quantizers.vector import VECTOR_PRESETS, VectorQuantizer, VectorQuantizerConfig

QuantizerConfig = Annotated[VectorQuantizerConfig | FSQConfig, Field(discriminator="kind")]


def build_quantizer(cfg: VectorQuantizerConfig | FSQConfig) -> Quantizer:
    """The quantizer described by ``cfg``."""
    if isinstance(cfg, VectorQuantizerConfig):
        return VectorQuantizer(cfg)
    if isinstance(cfg, FSQConfig):
        return FSQ(cfg)
    raise TypeError(f"not a quantizer config: {type(cfg).__name__}")


__all__ = [
    "FSQ",
    "FSQ_LEVELS",
    "VECTOR_PRESETS",
    "CVQConfig",
    "CodebookHistogram",
    "DeadCodeReviver",
    "FSQConfig",
    "Quantizer",
    "QuantizerConfig",
    "QuantizerOutput",
    "SearchResult",
    "VectorQuantizer",
    "VectorQuantizerConfig",
    "build_quantizer",
    "codebook_statistics",
    "distributed_kmeans",
    "fsq_levels",
    "kmeans",
    "nearest_codes",
]
