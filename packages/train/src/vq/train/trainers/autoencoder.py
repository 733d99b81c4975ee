"""Trainer of the plain convolutional autoencoder: L1 reconstruction, one optimizer.

It is the smallest complete trainer and the reference for how the generic loop is used.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from vq.core.loop import Run, RunConfig
from vq.core.optim import OptimizationConfig
from vq.tokenizers.autoencoders.conv import ConvAutoencoder, ConvAutoencoderConfig
from vq.train.data import DatasetConfig, build_dataset, collate


class AutoencoderRunConfig(RunConfig):
    trainer: Literal["autoencoder"] = "autoencoder"
    model: ConvAutoencoderConfig = ConvAutoencoderConfig()
    data: DatasetConfig
    optimization: OptimizationConfig = OptimizationConfig()


class AutoencoderTrainer:
    def __init__(self, config: AutoencoderRunConfig, run: Run) -> None:
        self.run = run
        self.dataset = build_dataset(config.data, "train")
        self.collate = collate
        self.model = run.prepare("model", ConvAutoencoder(config.model))
        self.opt = run.optimization(
            "model", self.model, self.model.parameters(), config.optimization
        )

    def step(self, batch: dict[str, Any], iteration: int) -> dict[str, torch.Tensor | float]:
        image = batch["image"]  # (B, 3, H, W) in [-1, 1]
        with self.opt.accumulate():
            with self.run.autocast():
                reconstruction = self.model(image)
            loss = F.l1_loss(reconstruction.float(), image)
            self.opt.backward(loss)
        return {"l1_loss": loss, **self.opt.step(iteration)}

    @torch.no_grad()
    def visuals(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        image = batch["image"][:8]
        with self.run.autocast():
            reconstruction = self.model(image)
        return {"image": image, "reconstruction": reconstruction.float()}
