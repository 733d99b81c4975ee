"""GAN discriminators for tokenizer training: PatchGAN (taming) and StyleGAN2."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import nn

from vq.tokenizers.discriminators.patchgan import PatchGANConfig, PatchGANDiscriminator
from vq.tokenizers.discriminators.stylegan2 import (
    StyleGAN2Discriminator,
    StyleGAN2DiscriminatorConfig,
)

# A config field of this type accepts either, told apart by its ``kind`` key.
DiscriminatorConfig = Annotated[
    PatchGANConfig | StyleGAN2DiscriminatorConfig, Field(discriminator="kind")
]


def build_discriminator(config: PatchGANConfig | StyleGAN2DiscriminatorConfig) -> nn.Module:
    if isinstance(config, PatchGANConfig):
        return PatchGANDiscriminator(config)
    return StyleGAN2Discriminator(config)


__all__ = [
    "DiscriminatorConfig",
    "PatchGANConfig",
    "PatchGANDiscriminator",
    "StyleGAN2Discriminator",
    "StyleGAN2DiscriminatorConfig",
    "build_discriminator",
]
