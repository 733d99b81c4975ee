"""GAN training of pixel tokenizers: VQGAN, CVQ-VAE, FSQ and LlamaGen's VQGAN.

The whole ``PixelTokenizer`` of ``config.model`` (encoder, connectors, quantizer, decoder)
is the generator of :class:`vq.train.gan_step.GANStep`: one autoencoder forward per
iteration, a generator step with the reconstruction, quantizer and GAN terms, and a
discriminator step on the detached reconstruction (that module's docstring has the
details). The recipes of the reference live beside the configs that use them:
``configs/vqgan/_recipe.py`` (taming's, also used by ``configs/cvqvae`` and ``configs/fsq``)
and ``configs/llamagen/_recipe.py``.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import model_validator
from torch import Tensor

from vq.core.loop import Run
from vq.tokenizers.discriminators import StyleGAN2DiscriminatorConfig
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizer, PixelTokenizerConfig
from vq.train.data import build_dataset, collate
from vq.train.gan_step import GANRunConfig, GANStep, Generator, UsedWeight


class VQGANRunConfig(GANRunConfig):
    """Generator: encoder, connectors, quantizer and decoder."""

    trainer: Literal["vqgan"] = "vqgan"
    model: PixelTokenizerConfig

    @model_validator(mode="after")
    def _fits_the_data(self) -> Self:
        image_size = self.image_size
        factor = self.model.encoder.downsample_factor
        if image_size % factor:
            raise ValueError(
                f"data.image_size {image_size} is not a multiple of the tokenizer's "
                f"downsample factor {factor}"
            )
        disc = self.gan.discriminator
        if isinstance(disc, StyleGAN2DiscriminatorConfig) and disc.image_size != image_size:
            raise ValueError(
                f"gan.discriminator.image_size {disc.image_size} must equal "
                f"data.image_size {image_size} (StyleGAN2 is built for one resolution)"
            )
        return self

    def build_tokenizer(self) -> PixelTokenizer:
        """The tokenizer this run trains (weights: ``checkpoints/iter_N/models/model``)."""
        return PixelTokenizer(self.model)


class VQGANTrainer:
    """GAN training of the whole pixel tokenizer of ``config.model``."""

    def __init__(self, config: VQGANRunConfig, run: Run) -> None:
        self.config = config
        self.dataset = build_dataset(config.data, "train")
        self.collate = collate
        tokenizer = PixelTokenizer(config.model)
        last_layer = UsedWeight(tokenizer.decoder.out_conv)
        self.model = run.prepare("model", tokenizer)
        opt = run.optimization("model", self.model, self.model.parameters(), config.optimization)
        self.gan = GANStep(config, run, Generator(self.model, opt, last_layer))

    def step(self, batch: dict[str, Any], iteration: int) -> dict[str, Tensor | float]:
        return self.gan.step(batch, iteration)

    def visuals(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        return self.gan.visuals(batch)
