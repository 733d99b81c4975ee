"""Convolutional image autoencoders (encoder and decoder halves of pixel tokenizers)."""

from vq.tokenizers.autoencoders.vqgan import (
    PRESETS,
    VQGANDecoder,
    VQGANDecoderConfig,
    VQGANEncoder,
    VQGANEncoderConfig,
)

__all__ = ["PRESETS", "VQGANDecoder", "VQGANDecoderConfig", "VQGANEncoder", "VQGANEncoderConfig"]
