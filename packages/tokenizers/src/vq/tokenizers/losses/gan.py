"""Adversarial losses for tokenizer training, their R1 penalty and VQGAN's adaptive weight.

All take discriminator logits (any shape, e.g. PatchGAN's ``(B, 1, h, w)`` or StyleGAN2's
``(B, 1)``) and return scalar means, computed in fp32.

* hinge (taming's VQGAN):  D: (mean relu(1 - D(real)) + mean relu(1 + D(fake))) / 2,
                           G: -mean D(fake)
* non-saturating:          D: (mean softplus(-D(real)) + mean softplus(D(fake))) / 2,
                           G: mean softplus(-D(fake))   (BCE-with-logits against "real")
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vq.core.amp import fp32

GANLoss = Literal["hinge", "non_saturating"]


@fp32
def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


@fp32
def hinge_generator_loss(fake_logits: Tensor) -> Tensor:
    return -fake_logits.mean()


@fp32
def non_saturating_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())


@fp32
def non_saturating_generator_loss(fake_logits: Tensor) -> Tensor:
    return F.softplus(-fake_logits).mean()


def discriminator_loss(kind: GANLoss, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    if kind == "hinge":
        return hinge_discriminator_loss(real_logits, fake_logits)
    return non_saturating_discriminator_loss(real_logits, fake_logits)


def generator_loss(kind: GANLoss, fake_logits: Tensor) -> Tensor:
    if kind == "hinge":
        return hinge_generator_loss(fake_logits)
    return non_saturating_generator_loss(fake_logits)


def r1_penalty(discriminator: nn.Module, real: Tensor) -> Tensor:
    """``mean_b ||d D(real_b) / d real_b||^2``, differentiable (for the D step).

    The discriminator runs in eval mode for this forward (as in the reference), so that
    BatchNorm uses its running statistics and does not update them; its mode is restored.
    """
    was_training = discriminator.training
    discriminator.train(False)
    try:
        real = real.detach().requires_grad_(True)
        logits = discriminator(real)
        (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    finally:
        discriminator.train(was_training)
    return grad.float().pow(2).flatten(1).sum(dim=1).mean()


def adaptive_generator_weight(
    rec_grad: Tensor,
    g_grad: Tensor,
    gain: float,
    max: float = 1e4,
) -> Tensor:
    """VQGAN's balance of the GAN term against the reconstruction terms.

    ``clamp(||d rec / d W|| / (||d g / d W|| + 1e-4), 0, max) * gain`` from the gradients
    ``rec_grad`` and ``g_grad`` of the reconstruction and generator losses at the decoder's
    last conv weight ``W``: the generator loss is scaled so that its gradient at the output
    layer has the size of the reconstruction gradient. The result is detached (a weight, not
    a path for gradients).
    """
    ratio = rec_grad.float().norm() / (g_grad.float().norm() + 1e-4)
    return ratio.clamp(0.0, max).detach() * gain
