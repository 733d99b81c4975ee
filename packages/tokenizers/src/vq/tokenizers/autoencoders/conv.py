"""A plain convolutional autoencoder (no quantizer): the smallest reconstruction baseline.

Encoder: conv stem, then ``levels`` stride-2 convs each followed by a residual block;
decoder mirrors it with nearest upsampling. Downsampling factor 2**levels.
"""

from __future__ import annotations

import torch
from torch import nn

from vq.core.config import Config


class ConvAutoencoderConfig(Config):
    width: int = 32
    levels: int = 2
    latent_dim: int = 8
    groups: int = 8


class _Residual(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ConvAutoencoder(nn.Module):
    def __init__(self, config: ConvAutoencoderConfig) -> None:
        super().__init__()
        w, g = config.width, config.groups
        down: list[nn.Module] = [nn.Conv2d(3, w, 3, padding=1)]
        up: list[nn.Module] = [nn.Conv2d(config.latent_dim, w, 3, padding=1)]
        for _ in range(config.levels):
            down += [nn.Conv2d(w, w, 4, stride=2, padding=1), _Residual(w, g)]
            up += [
                _Residual(w, g),
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(w, w, 3, padding=1),
            ]
        down += [nn.GroupNorm(g, w), nn.SiLU(), nn.Conv2d(w, config.latent_dim, 1)]
        up += [nn.GroupNorm(g, w), nn.SiLU(), nn.Conv2d(w, 3, 3, padding=1)]
        self.encoder = nn.Sequential(*down)
        self.decoder = nn.Sequential(*up)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # (B, 3, H, W) -> (B, latent, H/f, W/f) -> (B, 3, H, W)
        return self.decoder(self.encoder(image))
