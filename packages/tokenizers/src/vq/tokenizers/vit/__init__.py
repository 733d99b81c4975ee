"""The BEiT-v2 style ViT of VQ-KD (encoder, feature decoder and ViT pixel decoder)."""

from vq.tokenizers.vit.vit import PRESETS, ViT, ViTConfig, unpatchify

__all__ = ["PRESETS", "ViT", "ViTConfig", "unpatchify"]
