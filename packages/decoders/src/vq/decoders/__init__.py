"""vq.decoders: pixel decoders that make VQ-KD and Cluster complete image tokenizers.

``DecodedTokenizer(DecodedTokenizerConfig.preset(vqkd_config, "vqgan"))`` is a frozen
feature tokenizer plus a trainable pixel decoder, with ``encode(image) -> ids`` and
``decode(ids) -> image``; ``vq.train.trainers.decoder`` trains it.
"""

from vq.decoders.decoded_tokenizer import (
    DecodedTokenizer,
    DecodedTokenizerConfig,
    FeatureTokenizer,
    FeatureTokenizerConfig,
    build_feature_tokenizer,
)
from vq.decoders.pixel_decoders import (
    PixelDecoderConfig,
    PixelDecoderName,
    build_pixel_decoder,
    pixel_decoder_preset,
)

__all__ = [
    "DecodedTokenizer",
    "DecodedTokenizerConfig",
    "FeatureTokenizer",
    "FeatureTokenizerConfig",
    "PixelDecoderConfig",
    "PixelDecoderName",
    "build_feature_tokenizer",
    "build_pixel_decoder",
    "pixel_decoder_preset",
]
