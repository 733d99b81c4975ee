"""Losses of tokenizer training: reconstruction (L1, L2, LPIPS) and adversarial."""

from vq.tokenizers.losses.gan import (
    GANLoss,
    adaptive_generator_weight,
    discriminator_loss,
    generator_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    non_saturating_discriminator_loss,
    non_saturating_generator_loss,
    r1_penalty,
)
from vq.tokenizers.losses.lpips import LPIPS, LPIPSConfig
from vq.tokenizers.losses.reconstruction import (
    ReconstructionLoss,
    ReconstructionLossConfig,
    l1_loss,
    l2_loss,
)

__all__ = [
    "LPIPS",
    "GANLoss",
    "LPIPSConfig",
    "ReconstructionLoss",
    "ReconstructionLossConfig",
    "adaptive_generator_weight",
    "discriminator_loss",
    "generator_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "l1_loss",
    "l2_loss",
    "non_saturating_discriminator_loss",
    "non_saturating_generator_loss",
    "r1_penalty",
]
