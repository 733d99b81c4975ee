"""Tokenizer models: full encode -> quantize -> decode pipelines."""

from vq.tokenizers.models.pixel_tokenizer import (
    PixelTokenizer,
    PixelTokenizerConfig,
    TokenizerOutput,
)

__all__ = ["PixelTokenizer", "PixelTokenizerConfig", "TokenizerOutput"]
