"""A pixel tokenizer: image -> grid of discrete tokens -> image (VQGAN, CVQ-VAE, FSQ).

    image (B, 3, H, W) in [-1, 1]
      -> encoder       (B, C_z, h, w)      h = H / f, w = W / f
      -> post_encode   (B, D, h, w)        connector to the quantizer's dimension
      -> quantizer     (B, D, h, w) codes, (B, h, w) indices
      -> pre_decode    (B, C_z, h, w)
      -> decoder       (B, 3, H, W)

The families differ only in their parts: VQGAN and CVQ-VAE use a vector quantizer behind
1x1 conv connectors, FSQ a scalar quantizer behind two 1x1 convs each way. Training
(losses, discriminator) lives in the trainers; this module is the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from pydantic import Field, model_validator
from torch import Tensor, nn

from vq.core.config import Config
from vq.core.errors import UserError
from vq.tokenizers.autoencoders.vqgan import (
    VQGANDecoder,
    VQGANDecoderConfig,
    VQGANEncoder,
    VQGANEncoderConfig,
)
from vq.tokenizers.connectors import ConnectorConfig, build_connector
from vq.tokenizers.quantizers import (
    FSQConfig,
    QuantizerConfig,
    QuantizerOutput,
    VectorQuantizerConfig,
    build_quantizer,
)


def quantizer_dim(config: VectorQuantizerConfig | FSQConfig) -> int:
    """The channel count a quantizer of ``config`` consumes."""
    if isinstance(config, FSQConfig):
        return len(config.levels)
    return config.dim


class PixelTokenizerConfig(Config):
    encoder: VQGANEncoderConfig = Field(default_factory=VQGANEncoderConfig)
    post_encode: ConnectorConfig
    quantizer: QuantizerConfig
    pre_decode: ConnectorConfig
    decoder: VQGANDecoderConfig = Field(default_factory=VQGANDecoderConfig)

    @model_validator(mode="after")
    def _parts_fit(self) -> Self:
        dim = quantizer_dim(self.quantizer)
        chain = [
            (
                "encoder out",
                self.encoder.out_channels,
                "post_encode in",
                self.post_encode.in_channels,
            ),
            ("post_encode out", self.post_encode.out_channels, "quantizer dim", dim),
            ("quantizer dim", dim, "pre_decode in", self.pre_decode.in_channels),
            (
                "pre_decode out",
                self.pre_decode.out_channels,
                "decoder in",
                self.decoder.in_channels,
            ),
        ]
        for left, a, right, b in chain:
            if a != b:
                raise ValueError(f"channels do not fit: {left} = {a} but {right} = {b}")
        if self.encoder.downsample_factor != self.decoder.downsample_factor:
            raise ValueError(
                f"the encoder downsamples by {self.encoder.downsample_factor} "
                f"but the decoder upsamples by {self.decoder.downsample_factor}"
            )
        return self

    @classmethod
    def from_preset(
        cls,
        preset: str,
        quantizer: VectorQuantizerConfig | FSQConfig,
        connector_hidden: tuple[int, ...] = (),
        **autoencoder: Any,
    ) -> PixelTokenizerConfig:
        """A VQGAN-preset autoencoder around ``quantizer`` with 1x1 conv connectors.

        ``connector_hidden`` adds intermediate widths to the connectors: FSQ's recipe is
        ``(256,)``, i.e. 256 -> 256 -> levels and levels -> 256 -> 256. ``autoencoder``
        overrides fields of both encoder and decoder (e.g. ``norm_groups``, ``width``).
        """
        encoder = VQGANEncoderConfig.preset(preset, **autoencoder)
        decoder = VQGANDecoderConfig.preset(preset, **autoencoder)
        dim = quantizer_dim(quantizer)
        return cls(
            encoder=encoder,
            post_encode=ConnectorConfig(channels=(encoder.out_channels, *connector_hidden, dim)),
            quantizer=quantizer,
            pre_decode=ConnectorConfig(
                channels=(dim, *reversed(connector_hidden), decoder.in_channels)
            ),
            decoder=decoder,
        )


@dataclass
class TokenizerOutput:
    reconstruction: Tensor  # (B, 3, H, W)
    indices: Tensor  # (B, h, w) int64
    quantizer: QuantizerOutput


class PixelTokenizer(nn.Module):
    def __init__(self, config: PixelTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = VQGANEncoder(config.encoder)
        self.post_encode = build_connector(config.post_encode)
        self.quantizer = build_quantizer(config.quantizer)
        self.pre_decode = build_connector(config.pre_decode)
        self.decoder = VQGANDecoder(config.decoder)

    @property
    def downsample_factor(self) -> int:
        return self.encoder.downsample_factor

    @property
    def num_codes(self) -> int:
        return self.quantizer.num_codes

    def grid_size(self, image_size: int | tuple[int, int]) -> tuple[int, int]:
        """Token grid ``(h, w)`` of an image of ``image_size`` (an int means square)."""
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        f = self.downsample_factor
        if height % f or width % f:
            raise UserError(
                f"image size {height}x{width} is not a multiple of the tokenizer's "
                f"downsample factor {f}"
            )
        return height // f, width // f

    def _features(self, image: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, D, h, w)
        self.grid_size((image.shape[-2], image.shape[-1]))
        return self.post_encode(self.encoder(image))

    def _reconstruct(self, codes: Tensor) -> Tensor:  # (B, D, h, w) -> (B, 3, H, W)
        return self.decoder(self.pre_decode(codes))

    def forward(self, image: Tensor) -> TokenizerOutput:
        """The training pass: reconstruction, tokens and the quantizer's losses/statistics."""
        quantized = self.quantizer(self._features(image))  # codes (B, D, h, w)
        return TokenizerOutput(
            reconstruction=self._reconstruct(quantized.quantized),
            indices=quantized.indices,
            quantizer=quantized,
        )

    def encode(self, image: Tensor) -> Tensor:  # (B, 3, H, W) in [-1, 1] -> (B, h, w) int64
        """Tokens of ``image``; changes no state (safe on one rank, in eval or train mode)."""
        return self.quantizer.indices(self._features(image))

    def decode(self, indices: Tensor) -> Tensor:  # (B, h, w) -> (B, 3, H, W), about [-1, 1]
        # codes come from the quantizer (kept in fp32); the decoder may run in bf16
        codes = self.quantizer.codes(indices).to(self.decoder.last_layer_weight.dtype)
        return self._reconstruct(codes)
