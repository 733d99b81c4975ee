"""Pixel decoders: a grid of code vectors ``(B, D, h, w)`` -> an image ``(B, 3, h*f, w*f)``.

Two architectures, both reused from ``vq.tokenizers``, each behind its own ``pre_decode``
connector:

* ``vqgan``: a 1x1 conv ``D -> 256`` then the taming f16 VQGAN decoder (convolutions,
  residual blocks, self-attention at the lowest resolution, four 2x upsamplings);
* ``vqkd`` / ``vqkd_large``: VQ-KD's ViT read with ``patch_size=1`` (one token per code),
  each output token a 16x16x3 pixel patch (ViT-B: 12 blocks of 768; large: 32 of 1280,
  16 heads). Its patch embedding is already a learned per-token linear map, so the
  connector in front of it is the identity (a 1x1 conv there would be a second linear map
  composed with the first).

The ViT's learned position embeddings are sized for the token grid of the training
resolution (16x16 at 256 px); another grid interpolates them, as VQ-KD's encoder does.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from vq.tokenizers.autoencoders.vqgan import VQGANDecoder, VQGANDecoderConfig
from vq.tokenizers.connectors import ConnectorConfig
from vq.tokenizers.vit import ViT, ViTConfig

PixelDecoderConfig = VQGANDecoderConfig | ViTConfig
"""A conv (VQGAN) or a ViT pixel decoder; their fields differ, so a dumped config can only
validate as the one it was written from."""

PixelDecoderName = Literal["vqgan", "vqkd", "vqkd_large"]

VQGAN_LATENT_CHANNELS = 256  # taming's C_z: the 1x1 conv maps the codes to this width


def pixel_decoder_preset(
    name: PixelDecoderName, code_dim: int, grid_size: int
) -> tuple[ConnectorConfig, PixelDecoderConfig]:
    """``(pre_decode, decoder)`` of the reference pixel decoder ``name`` for codes of width
    ``code_dim`` on a ``grid_size`` token grid (16 for 256 px images); every preset upsamples
    by 16."""
    if name == "vqgan":
        return (
            ConnectorConfig(channels=(code_dim, VQGAN_LATENT_CHANNELS)),
            VQGANDecoderConfig.preset("f16", in_channels=VQGAN_LATENT_CHANNELS),
        )
    if name in ("vqkd", "vqkd_large"):
        return (
            ConnectorConfig(kind="identity", channels=(code_dim,)),
            ViTConfig.preset(name, in_chans=code_dim, grid_size=grid_size),
        )
    raise ValueError(f"unknown pixel decoder {name!r}; choose vqgan, vqkd or vqkd_large")


def in_channels(config: PixelDecoderConfig) -> int:
    """Channels of the code grid the decoder reads."""
    return config.in_channels if isinstance(config, VQGANDecoderConfig) else config.in_chans


def out_channels(config: PixelDecoderConfig) -> int:
    return config.out_channels if isinstance(config, VQGANDecoderConfig) else config.out_dim


def upsample_factor(config: PixelDecoderConfig) -> int:
    """Output pixels per token side."""
    if isinstance(config, VQGANDecoderConfig):
        return config.downsample_factor
    return config.out_patch_size // config.patch_size


def check_pixel_decoder(config: PixelDecoderConfig) -> None:
    """ValueError unless ``config`` turns one code per grid cell into RGB pixels."""
    if out_channels(config) != 3:
        raise ValueError(
            f"a pixel decoder emits RGB: out channels must be 3, not {out_channels(config)}"
        )
    if isinstance(config, ViTConfig):
        if config.patch_size != 1:
            raise ValueError("a ViT pixel decoder reads one code per token (patch_size 1)")
        if config.out_patch_size < 2:
            raise ValueError(
                "a ViT pixel decoder emits a pixel patch per token (out_patch_size > 1)"
            )


def build_pixel_decoder(config: PixelDecoderConfig) -> nn.Module:
    """The decoder module of ``config``: ``(B, D, h, w) -> (B, 3, h*f, w*f)``."""
    check_pixel_decoder(config)
    return VQGANDecoder(config) if isinstance(config, VQGANDecoderConfig) else ViT(config)


def last_layer(decoder: nn.Module) -> nn.Module:
    """The layer that writes the pixels (the GAN's adaptive weight compares gradients at
    its weight): the VQGAN decoder's last conv, the ViT's last linear layer."""
    if isinstance(decoder, VQGANDecoder):
        return decoder.out_conv
    if isinstance(decoder, ViT):
        return decoder.task_layer[-1]
    raise TypeError(f"not a pixel decoder: {type(decoder).__name__}")
