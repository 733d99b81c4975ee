"""The GAN step of autoencoder training, shared by the VQGAN-family and pixel-decoder trainers.

One iteration runs the autoencoder forward ONCE and takes two optimizer steps:

1. generator step: ``loss = q_loss + sum(r_losses) + lambda * g_loss``, where the GAN term
   ``g_loss`` comes from the discriminator judging the reconstruction. The discriminator
   is called unwrapped (no DDP hooks fire) with its parameters frozen, so the backward
   computes no discriminator weight gradients and leaves its ``.grad`` untouched (which
   keeps gradient accumulation of the discriminator correct).
   ``lambda = generator_weight * adaptive weight`` (VQGAN's ratio of the reconstruction
   and GAN gradient norms at the decoder's last conv, times a gain), or just
   ``generator_weight`` when the adaptive weight is off (LlamaGen).
2. discriminator step on the *detached* reconstruction: real and fake images in separate
   forwards of the wrapped discriminator (each BatchNorm batch is all-real or all-fake, as
   in the reference), hinge loss by default, optional R1 penalty.

Before ``discriminator_start`` (iterations ``<= discriminator_start``, counting from 1)
there is no discriminator step and ``lambda = 0``. The reference ran the autoencoder twice
per iteration (once per step), doubling the compute and the CVQ-VAE codebook updates;
reusing the reconstruction here gives the same gradients at half the cost.

The trainer builds the generator (what it trains of its model, the optimisation of those
parameters and the layer the adaptive weight differentiates) and hands it to
:class:`GANStep`, which owns the losses, the discriminator and its optimisation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from vq.core.config import Config
from vq.core.loop import Run
from vq.core.optim import Optimization, OptimizationConfig
from vq.core.parallel import unwrap
from vq.tokenizers.discriminators import DiscriminatorConfig, PatchGANConfig, build_discriminator
from vq.tokenizers.losses import (
    GANLoss,
    ReconstructionLoss,
    ReconstructionLossConfig,
    adaptive_generator_weight,
    discriminator_loss,
    generator_loss,
    r1_penalty,
)
from vq.train.tokenizer_run import TokenizerRunConfig


class GANConfig(Config):
    """The adversarial part of the objective."""

    discriminator: DiscriminatorConfig = Field(default_factory=PatchGANConfig)
    loss: GANLoss = "hinge"
    discriminator_start: int = Field(0, ge=0)
    """The discriminator trains, and the generator gets its GAN term, at iterations
    ``> discriminator_start`` (iterations count from 1; 0 = from the first)."""
    generator_weight: float = Field(1.0, ge=0.0)
    """Constant factor of the generator's GAN term."""
    discriminator_weight: float = Field(1.0, ge=0.0)
    """Constant factor of the discriminator loss."""
    adaptive_weight_gain: float | None = Field(0.8, ge=0.0)
    """VQGAN's adaptive weight times this gain; None switches the adaptive weight off."""
    r1_weight: float = Field(0.0, ge=0.0)
    """Weight of the R1 gradient penalty on real images (0: off)."""


class GANRunConfig(TokenizerRunConfig):
    """What GAN training of an autoencoder needs besides the model: data, reconstruction
    losses, the GAN and the two optimizers (shared by VQGAN-family and pixel-decoder runs)."""

    reconstruction: ReconstructionLossConfig = Field(default_factory=ReconstructionLossConfig)
    gan: GANConfig = Field(default_factory=GANConfig)
    optimization: OptimizationConfig
    """Generator: the parameters the model trains."""
    discriminator_optimization: OptimizationConfig

    @model_validator(mode="after")
    def _adaptive_weight_needs_reconstruction(self) -> Self:
        rec = self.reconstruction
        if self.gan.adaptive_weight_gain is not None and not (
            rec.l1_weight or rec.l2_weight or rec.lpips_weight
        ):
            raise ValueError(
                "the adaptive GAN weight compares against the reconstruction loss: give a "
                "reconstruction weight > 0 or set gan.adaptive_weight_gain to None"
            )
        return self


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` need no gradient inside: activations still carry gradients
    through it, but no weight gradient is computed or accumulated."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class UsedWeight:
    """The weight tensor a layer used in its latest forward.

    The adaptive GAN weight differentiates w.r.t. the decoder's last conv weight. With one
    process or DDP that is the parameter itself; FSDP2 swaps in an unsharded copy for the
    forward, which is the tensor in the autograd graph, so it is recorded as the layer runs.
    """

    def __init__(self, layer: nn.Module) -> None:
        self.tensor: Tensor | None = None
        layer.register_forward_pre_hook(self._record)

    def _record(self, module: nn.Module, args: Any) -> None:
        self.tensor = module.weight

    def get(self) -> Tensor:
        if self.tensor is None:
            raise RuntimeError("the layer has not run a forward pass yet")
        return self.tensor


def _sum(terms: dict[str, Tensor], device: torch.device) -> Tensor:
    if not terms:
        return torch.zeros((), device=device)
    return torch.stack(list(terms.values())).sum()


@dataclass
class Generator:
    """The autoencoder a GAN run trains: the prepared (maybe wrapped) module, its
    optimisation, and the decoder's last layer that the adaptive weight differentiates.

    ``model(image)`` returns an output with ``reconstruction`` (B, 3, H, W) and
    ``quantizer`` (its ``loss()``, ``losses`` and ``statistics``)."""

    model: nn.Module
    opt: Optimization
    last_layer: UsedWeight


class GANStep:
    """One forward of ``generator``, its step, and the discriminator's step (module docstring).

    Built after the generator: the reconstruction loss (LPIPS reads its weight files here),
    then the discriminator, prepared as ``discriminator`` for checkpoints.
    """

    def __init__(self, config: GANRunConfig, run: Run, generator: Generator) -> None:
        self.run, self.config = run, config
        self.model, self.opt, self.last_layer = generator.model, generator.opt, generator.last_layer
        self.reconstruction_loss = run.place(ReconstructionLoss(config.reconstruction))
        self.discriminator = run.prepare(
            "discriminator", build_discriminator(config.gan.discriminator)
        )
        self.d_opt = run.optimization(
            "discriminator",
            self.discriminator,
            self.discriminator.parameters(),
            config.discriminator_optimization,
        )

    def step(self, batch: dict[str, Any], iteration: int) -> dict[str, Tensor | float]:
        gan = self.config.gan
        image = batch["image"]  # (B, 3, H, W) in [-1, 1]
        gan_on = iteration > gan.discriminator_start

        # ---- generator: the one autoencoder forward of the iteration
        with self.opt.accumulate():
            with self.run.autocast():
                out = self.model(image)
                reconstruction = out.reconstruction.float()  # (B, 3, H, W)
                r_losses = self.reconstruction_loss(reconstruction, image)
                if gan_on:
                    # unwrapped + frozen: no DDP hooks, no weight gradients for D here
                    raw_discriminator = unwrap(self.discriminator)
                    with frozen(raw_discriminator):
                        g_logits = raw_discriminator(reconstruction)
            r_loss = _sum(r_losses, image.device)
            q_loss = out.quantizer.loss()
            loss = q_loss + r_loss
            g_loss = aglw = torch.zeros((), device=image.device)  # the GAN-off terms
            if gan_on:
                g_loss = generator_loss(gan.loss, g_logits)
                aglw = torch.full((), gan.generator_weight, device=image.device)
            if gan_on and gan.adaptive_weight_gain is not None:  # its own backward
                aglw = self._adaptive_backward(
                    reconstruction, q_loss, r_loss, g_loss, gan.adaptive_weight_gain
                )
            else:
                self.opt.backward(loss + aglw * g_loss)
            loss = loss + aglw * g_loss
        logs: dict[str, Tensor | float] = {
            "loss": loss.detach(),
            **{k: v.detach() for k, v in r_losses.items()},
            "q_loss": q_loss.detach(),
            **{f"{k}_loss": v.detach() for k, v in out.quantizer.losses.items()},
            **out.quantizer.statistics,
            "g_loss": g_loss.detach(),
            "aglw": aglw,
            **{f"g_{k}": v for k, v in self.opt.step(iteration).items()},
        }

        # ---- discriminator, on the detached reconstruction
        d_logs: dict[str, Tensor | float] = dict.fromkeys(("d_loss", "d_real", "d_fake"), 0.0)
        if gan.r1_weight > 0:
            d_logs["r1"] = 0.0
        if gan_on:
            d_logs = self.discriminator_step(image, reconstruction.detach(), iteration)
        return {**logs, **d_logs}

    def _adaptive_backward(
        self, reconstruction: Tensor, q_loss: Tensor, r_loss: Tensor, g_loss: Tensor, gain: float
    ) -> Tensor:
        """The backward of ``q_loss + r_loss + lambda * g_loss`` with VQGAN's adaptive
        ``lambda`` (returned, detached), for ``reconstruction`` x (B, 3, H, W).

        ``lambda`` compares the gradients of ``r_loss`` and ``g_loss`` at the decoder's last
        conv weight W. Differentiating each loss to W and then the total again would run the
        backward of the LPIPS trunk and of the discriminator twice each. Here each runs once,
        down to x: the total's gradient at x is ``d r/dx + lambda * d g/dx``, and the two
        gradients at W follow from those through the last layer alone. The gradients are
        the same up to rounding, and the losses' graphs are freed before the autoencoder's
        backward, which lowers the peak memory.
        """
        # what backward multiplies a loss by: 1 / accumulation steps (x the fp16 loss scale)
        scale = self.opt.scale(torch.ones((), device=reconstruction.device))
        (r_x,) = torch.autograd.grad(self.opt.scale(r_loss), reconstruction)  # (B, 3, H, W)
        (g_x,) = torch.autograd.grad(self.opt.scale(g_loss), reconstruction)  # (B, 3, H, W)
        weight = self.last_layer.get()
        (r_w,) = torch.autograd.grad(reconstruction, weight, r_x, retain_graph=True)
        (g_w,) = torch.autograd.grad(reconstruction, weight, g_x, retain_graph=True)
        aglw = self.config.gan.generator_weight * adaptive_generator_weight(
            r_w / scale, g_w / scale, gain
        )
        # d/dx of (x * G).sum() is G: the autoencoder backpropagates the total's gradient once
        surrogate = self.opt.scale(q_loss) + (reconstruction * (r_x + aglw * g_x)).sum()
        surrogate.backward()
        return aglw

    def discriminator_step(
        self, image: Tensor, fake: Tensor, iteration: int
    ) -> dict[str, Tensor | float]:
        """One step of the discriminator on real ``image`` and ``fake`` (both (B, 3, H, W))."""
        gan = self.config.gan
        with self.d_opt.accumulate():
            with self.run.autocast():
                # separate forwards: BatchNorm statistics of all-real and all-fake batches
                real_logits = self.discriminator(image)
                fake_logits = self.discriminator(fake)
            d_loss = gan.discriminator_weight * discriminator_loss(
                gan.loss, real_logits, fake_logits
            )
            total = d_loss
            logs: dict[str, Tensor | float] = {}
            if gan.r1_weight > 0:
                # through the unwrapped module: its gradient reaches the same AccumulateGrad
                # nodes the wrapped forwards registered, so DDP reduces it with the rest.
                with self.run.autocast():
                    r1 = r1_penalty(unwrap(self.discriminator), image)
                total = total + gan.r1_weight * r1
                logs["r1"] = r1.detach()
            self.d_opt.backward(total)
        return {
            "d_loss": d_loss.detach(),
            "d_real": real_logits.detach().float().mean(),
            "d_fake": fake_logits.detach().float().mean(),
            **logs,
            **{f"d_{k}": v for k, v in self.d_opt.step(iteration).items()},
        }

    @torch.no_grad()
    def visuals(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Rows: images and their reconstructions (eval mode: no codebook update)."""
        image = batch["image"][:8]  # (<=8, 3, H, W)
        self.model.eval()
        try:
            with self.run.autocast():
                reconstruction = self.model(image).reconstruction
        finally:
            self.model.train()
        return {"image": image, "reconstruction": reconstruction.float()}
