"""Reconstruction losses of pixel tokenizers: L1, L2 (MSE) and LPIPS, on [-1, 1] images.

``ReconstructionLoss`` returns the weighted terms by name (``l1_r_loss``, ``l2_r_loss``,
``lpips_r_loss``; only those with a non-zero weight), so a trainer logs each and sums them.
VQGAN uses L1 + LPIPS, LlamaGen's VQGAN L2 + LPIPS.
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from vq.core.amp import fp32
from vq.core.config import Config
from vq.tokenizers.losses.lpips import LPIPS, LPIPSConfig


class ReconstructionLossConfig(Config):
    l1_weight: float = Field(1.0, ge=0.0)
    l2_weight: float = Field(0.0, ge=0.0)
    lpips_weight: float = Field(1.0, ge=0.0)
    lpips: LPIPSConfig = Field(default_factory=LPIPSConfig)


@fp32
def l1_loss(reconstruction: Tensor, image: Tensor) -> Tensor:
    return F.l1_loss(reconstruction, image)


@fp32
def l2_loss(reconstruction: Tensor, image: Tensor) -> Tensor:
    return F.mse_loss(reconstruction, image)


class ReconstructionLoss(nn.Module):
    """Weighted L1 / L2 / LPIPS terms between a reconstruction and its image."""

    def __init__(self, config: ReconstructionLossConfig) -> None:
        super().__init__()
        self.config = config
        # Built only when used: LPIPS reads two weight files.
        self.lpips = LPIPS(config.lpips) if config.lpips_weight > 0 else None

    def forward(self, reconstruction: Tensor, image: Tensor) -> dict[str, Tensor]:
        losses: dict[str, Tensor] = {}
        if self.config.l1_weight > 0:
            losses["l1_r_loss"] = self.config.l1_weight * l1_loss(reconstruction, image)
        if self.config.l2_weight > 0:
            losses["l2_r_loss"] = self.config.l2_weight * l2_loss(reconstruction, image)
        if self.lpips is not None:
            distance = self.lpips(reconstruction, image).mean()
            losses["lpips_r_loss"] = self.config.lpips_weight * distance
        return losses
