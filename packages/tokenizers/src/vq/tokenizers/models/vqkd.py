"""VQ-KD: a tokenizer whose codes are trained to predict a frozen teacher's features.

    image (B, 3, H, W) in [-1, 1]
      -> encoder    ViT-B/16                        (B, 32, h, w)      h = H / 16
      -> quantizer  8192 x 32, cosine, normalised   (B, 32, h, w) codes, (B, h, w) ids
      -> decoder    one ViT block, patch 1          (B, D_teacher, h, w)

The decoder exists only for training: its output is compared with the teacher's patch
features (1 - cosine, in the trainer), so the codes must keep what the teacher sees. The
codebook is an EMA of the encoder's (l2-normalised) features, initialised by k-means on
the first training batch, and gets no gradient; the encoder is held to its codes by a
commitment loss on normalised vectors (weight 1). The teacher is not part of this module:
it is a training-time target (see ``vq.train.trainers.vqkd``), and encoding needs only the
encoder and the codebook.

Tokens of a 224 px image form a 14x14 grid; other resolutions interpolate the position
embeddings (256 px gives 16x16, the grid used for generation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from pydantic import Field, model_validator
from torch import Tensor, nn

from vq.core.config import Config
from vq.core.errors import UserError
from vq.tokenizers.quantizers import QuantizerOutput, VectorQuantizer, VectorQuantizerConfig
from vq.tokenizers.vit import ViT, ViTConfig


class VQKDConfig(Config):
    """Encoder, codebook and feature decoder; ``decoder.out_dim`` is the teacher's width."""

    encoder: ViTConfig = Field(default_factory=lambda: ViTConfig.preset("vqkd_encoder"))
    quantizer: VectorQuantizerConfig = Field(
        default_factory=lambda: VectorQuantizerConfig.preset("vqkd", 8192, 32)
    )
    decoder: ViTConfig = Field(default_factory=lambda: ViTConfig.preset("vqkd_decoder"))

    @model_validator(mode="after")
    def _parts_fit(self) -> Self:
        encoder, quantizer, decoder = self.encoder, self.quantizer, self.decoder
        if encoder.out_patch_size != 1:
            raise ValueError(
                "the encoder must emit one feature vector per token (out_patch_size 1)"
            )
        if not encoder.out_dim == quantizer.dim == decoder.in_chans:
            raise ValueError(
                f"channels do not fit: encoder.out_dim = {encoder.out_dim}, quantizer.dim = "
                f"{quantizer.dim}, decoder.in_chans = {decoder.in_chans}"
            )
        if decoder.patch_size != 1 or decoder.out_patch_size != 1:
            raise ValueError("the decoder reads and writes one grid cell per token (patch sizes 1)")
        if decoder.grid_size != encoder.grid_size:
            raise ValueError(
                f"decoder.grid_size {decoder.grid_size} must equal encoder.grid_size "
                f"{encoder.grid_size}: the decoder reads the encoder's token grid"
            )
        if quantizer.update != "ema":
            raise ValueError(
                "VQ-KD's codebook learns by EMA (quantizer.update='ema'), not by gradients"
            )
        return self

    @property
    def feature_dim(self) -> int:
        """Width of the predicted teacher features."""
        return self.decoder.out_dim

    @classmethod
    def preset(
        cls,
        feature_dim: int,
        num_codes: int = 8192,
        code_dim: int = 32,
        encoder: str = "vqkd_encoder",
        decoder: str = "vqkd_decoder",
    ) -> VQKDConfig:
        """The reference VQ-KD (ViT presets ``encoder``/``decoder``) for a teacher of width
        ``feature_dim`` and a ``num_codes x code_dim`` codebook."""
        encoder_cfg = ViTConfig.preset(encoder, out_dim=code_dim)
        return cls(
            encoder=encoder_cfg,
            quantizer=VectorQuantizerConfig.preset("vqkd", num_codes, code_dim),
            decoder=ViTConfig.preset(
                decoder, grid_size=encoder_cfg.grid_size, in_chans=code_dim, out_dim=feature_dim
            ),
        )


@dataclass
class VQKDOutput:
    prediction: Tensor  # (B, D_teacher, h, w) predicted teacher features
    indices: Tensor  # (B, h, w) int64
    quantizer: QuantizerOutput


class VQKDTokenizer(nn.Module):
    def __init__(self, config: VQKDConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ViT(config.encoder)
        self.quantizer = VectorQuantizer(config.quantizer)
        self.decoder = ViT(config.decoder)

    @property
    def num_codes(self) -> int:
        return self.quantizer.num_codes

    @property
    def patch_size(self) -> int:
        """Pixels per token side (the downsample factor)."""
        return self.config.encoder.patch_size

    def grid_size(self, image_size: int | tuple[int, int]) -> tuple[int, int]:
        """Token grid ``(h, w)`` of an image of ``image_size`` (an int means square)."""
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        p = self.patch_size
        if height % p or width % p:
            raise UserError(
                f"image size {height}x{width} is not a multiple of the VQ-KD patch size {p}"
            )
        return height // p, width // p

    def forward(self, image: Tensor) -> VQKDOutput:
        """The training pass (updates the codebook in training mode)."""
        features = self.encoder(image)  # (B, 32, h, w)
        quantized = self.quantizer(features)  # codes (B, 32, h, w), normalised
        return VQKDOutput(
            prediction=self.decoder(quantized.quantized),  # (B, D_teacher, h, w)
            indices=quantized.indices,
            quantizer=quantized,
        )

    def encode(self, image: Tensor) -> Tensor:  # (B, 3, H, W) in [-1, 1] -> (B, h, w) int64
        """Tokens of ``image``; changes no state (safe on one rank, in eval or train mode)."""
        return self.quantizer.indices(self.encoder(image))

    def codes(self, indices: Tensor) -> Tensor:  # (B, h, w) -> (B, 32, h, w)
        """The (l2-normalised) code vectors of ``indices``: what pixel decoders read."""
        return self.quantizer.codes(indices)

    def predict_features(self, indices: Tensor) -> Tensor:  # (B, h, w) -> (B, D_teacher, h, w)
        """The teacher features the decoder reads from ``indices``."""
        return self.decoder(self.codes(indices))
