"""Exponential moving average of model weights (optional, from config)."""

from __future__ import annotations

import torch
from torch import nn

from vq.core.config import Config


class EMAConfig(Config):
    decay: float = 0.9999
    start: int = 0
    """Iteration from which the average is updated (before it, it copies the weights)."""


class ModelEMA:
    """Shadow copies of a module's floating point parameters and buffers.

    ``update`` runs after each optimizer step; ``state_dict`` holds the shadow weights under
    the module's own key names, so an EMA file loads into the plain model.
    """

    def __init__(self, module: nn.Module, config: EMAConfig) -> None:
        self.module = module
        self.config = config
        self.shadow = {
            k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()
        }

    @torch.no_grad()
    def update(self, iteration: int) -> None:
        decay = self.config.decay if iteration > self.config.start else 0.0
        for k, v in self.module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach().to(self.shadow[k].dtype), 1.0 - decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)
