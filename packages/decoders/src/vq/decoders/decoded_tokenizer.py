"""A complete image tokenizer from a feature tokenizer (VQ-KD, Cluster) and a pixel decoder.

VQ-KD and Cluster tokens are learned to carry what an image-understanding network sees, not
pixels: their own decoders predict features. A pixel decoder trained afterwards on their
frozen codes turns them into a tokenizer with both directions::

    image (B, 3, H, W) in [-1, 1]
      -> tokenizer.encode   frozen VQ-KD / Cluster         (B, h, w) ids       h = H / 16
      -> tokenizer.codes    frozen codebook lookup          (B, D, h, w)        D = 32 / 768
      -> pre_decode         1x1 conv D -> 256 (or identity) (B, C, h, w)
      -> pixel_decoder      VQGAN f16 decoder or ViT        (B, 3, H, W)

Only ``pre_decode`` and ``pixel_decoder`` learn. The tokenizer is frozen for good: no
gradients, always in eval mode (a parent's ``.train()`` does not reach it), and it is only
ever called through ``encode``/``codes``, which change no state, so its k-means, EMA and
dead-code updates cannot run.

State-dict layout: the tokenizer's sub-modules are registered here under their own names,
so a tokenizer checkpoint (``encoder.*``, ``quantizer.*``, ``decoder.*`` for VQ-KD;
``quantizer.*`` for Cluster, whose teacher holds no state) loads into this module as it
is, and the decoder's parts sit beside them (``pre_decode.*``, ``pixel_decoder.*``).
``frozen_prefixes`` names the tokenizer's part, which training checkpoints leave out: the
weights of a trained pair are the tokenizer's checkpoint plus the decoder run's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Self

import torch
from pydantic import model_validator
from torch import Tensor, nn

from vq.core.config import Config
from vq.core.errors import UserError
from vq.decoders.pixel_decoders import (
    PixelDecoderConfig,
    PixelDecoderName,
    build_pixel_decoder,
    check_pixel_decoder,
    in_channels,
    last_layer,
    pixel_decoder_preset,
    upsample_factor,
)
from vq.tokenizers.connectors import ConnectorConfig, build_connector
from vq.tokenizers.models.cluster import ClusterConfig, ClusterTokenizer
from vq.tokenizers.models.pixel_tokenizer import TokenizerOutput
from vq.tokenizers.models.vqkd import VQKDConfig, VQKDTokenizer
from vq.tokenizers.quantizers import QuantizerOutput, codebook_statistics

FeatureTokenizerConfig = VQKDConfig | ClusterConfig
"""The tokenizers whose codes need a pixel decoder (their fields differ, so a dumped
config validates only as the one it was written from)."""

FeatureTokenizer = VQKDTokenizer | ClusterTokenizer

DECODER_PARTS = ("pre_decode", "pixel_decoder")


def build_feature_tokenizer(config: FeatureTokenizerConfig) -> FeatureTokenizer:
    """VQ-KD or Cluster, with random weights (Cluster loads its teacher's file here)."""
    if isinstance(config, VQKDConfig):
        return VQKDTokenizer(config)
    return ClusterTokenizer(config)


class DecodedTokenizerConfig(Config):
    tokenizer: FeatureTokenizerConfig
    pre_decode: ConnectorConfig
    decoder: PixelDecoderConfig

    @model_validator(mode="after")
    def _parts_fit(self) -> Self:
        check_pixel_decoder(self.decoder)
        if self.pre_decode.in_channels != self.code_dim:
            raise ValueError(
                f"channels do not fit: the codes have {self.code_dim} channels but "
                f"pre_decode reads {self.pre_decode.in_channels}"
            )
        if self.pre_decode.out_channels != in_channels(self.decoder):
            raise ValueError(
                f"channels do not fit: pre_decode gives {self.pre_decode.out_channels} "
                f"channels but the pixel decoder reads {in_channels(self.decoder)}"
            )
        return self

    @property
    def code_dim(self) -> int:
        return self.tokenizer.quantizer.dim

    @property
    def upsample_factor(self) -> int:
        """Output pixels per token side."""
        return upsample_factor(self.decoder)

    @classmethod
    def preset(
        cls, tokenizer: FeatureTokenizerConfig, decoder: PixelDecoderName, grid_size: int = 16
    ) -> DecodedTokenizerConfig:
        """``tokenizer`` with the reference pixel decoder ``decoder`` (``vqgan``, ``vqkd``,
        ``vqkd_large``) for a ``grid_size`` token grid (16: 256 px images)."""
        dim = tokenizer.quantizer.dim
        pre_decode, pixel_decoder = pixel_decoder_preset(decoder, dim, grid_size)
        return cls(tokenizer=tokenizer, pre_decode=pre_decode, decoder=pixel_decoder)


class DecodedTokenizer(nn.Module):
    """``encode(image) -> ids``, ``decode(ids) -> image`` and the training ``forward``."""

    def __init__(self, config: DecodedTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        tokenizer = build_feature_tokenizer(config.tokenizer)
        tokenizer.requires_grad_(False).eval()
        if list(tokenizer.parameters(recurse=False)) or list(tokenizer.buffers(recurse=False)):
            raise TypeError(f"{type(tokenizer).__name__} keeps tensors outside its sub-modules")
        # The tokenizer object is kept for its encode/codes; its sub-modules are registered
        # here under their own names (see the module docstring for why).
        self.__dict__["tokenizer"] = tokenizer
        self.frozen_prefixes: tuple[str, ...] = ()
        for name, child in tokenizer.named_children():
            if name in DECODER_PARTS:
                raise TypeError(f"the tokenizer's sub-module {name!r} clashes with a decoder part")
            self.add_module(name, child)
            self.frozen_prefixes += (name,)
        self.pre_decode = build_connector(config.pre_decode)
        self.pixel_decoder = build_pixel_decoder(config.decoder)

    @property
    def tokenizer(self) -> FeatureTokenizer:
        return self.__dict__["tokenizer"]

    @property
    def num_codes(self) -> int:
        return self.tokenizer.num_codes

    @property
    def upsample_factor(self) -> int:
        return self.config.upsample_factor

    @property
    def last_layer(self) -> nn.Module:
        """The pixel decoder's output layer (for the GAN's adaptive weight)."""
        return last_layer(self.pixel_decoder)

    def grid_size(self, image_size: int | tuple[int, int]) -> tuple[int, int]:
        """Token grid ``(h, w)`` of an image of ``image_size`` (an int means square)."""
        return self.tokenizer.grid_size(image_size)

    def output_size(self, image_size: int | tuple[int, int]) -> tuple[int, int]:
        """Size of the reconstruction of an image of ``image_size``: its token grid times
        the upsampling factor (Cluster's grid is the teacher's, whatever the input size)."""
        h, w = self.grid_size(image_size)
        return h * self.upsample_factor, w * self.upsample_factor

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The decoder's parameters: ``pre_decode`` and ``pixel_decoder``."""
        for name in DECODER_PARTS:
            yield from getattr(self, name).parameters()

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        self.tokenizer.eval()  # the frozen part stays in eval mode
        return self

    def _reconstruct(self, codes: Tensor) -> Tensor:  # (B, D, h, w) -> (B, 3, h*f, w*f)
        return self.pixel_decoder(self.pre_decode(codes))

    def forward(self, image: Tensor) -> TokenizerOutput:
        """The training pass: reconstruction, tokens and codebook statistics of the batch.

        The frozen quantizer contributes no loss. The statistics are all-reduced, so with a
        process group every rank calls ``forward`` together (``encode``/``decode`` are safe
        on one rank).
        """
        with torch.no_grad():
            indices = self.tokenizer.encode(image)  # (B, h, w)
            codes = self.tokenizer.codes(indices)  # (B, D, h, w)
        quantizer = QuantizerOutput(
            quantized=codes,
            indices=indices,
            statistics=codebook_statistics(indices, self.num_codes),
        )
        return TokenizerOutput(
            reconstruction=self._reconstruct(codes), indices=indices, quantizer=quantizer
        )

    def encode(self, image: Tensor) -> Tensor:  # (B, 3, H, W) in [-1, 1] -> (B, h, w) int64
        """Tokens of ``image``; changes no state."""
        return self.tokenizer.encode(image)

    def decode(self, indices: Tensor) -> Tensor:  # (B, h, w) -> (B, 3, h*f, w*f), about [-1, 1]
        return self._reconstruct(self.tokenizer.codes(indices))

    def check_image_size(self, image_size: int | tuple[int, int]) -> None:
        """UserError unless reconstructions of ``image_size`` images have that size."""
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        out = self.output_size(size)
        if out != size:
            kind = "VQ-KD" if isinstance(self.tokenizer, VQKDTokenizer) else "Cluster"
            raise UserError(
                f"pixel decoder: {kind} gives a {self.grid_size(size)} token grid for "
                f"{size[0]}x{size[1]} images and the decoder upsamples by "
                f"{self.upsample_factor}, so reconstructions would be {out[0]}x{out[1]}; "
                "make the data's image size match (Cluster: the teacher's image_size)"
            )
