"""PatchGAN discriminator (pix2pix "NLayer", as used by taming-transformers' VQGAN).

A stack of 4x4 convolutions whose output is a grid of logits, each judging one patch of
the input (70x70 pixels at depth 3). Layout at depth ``n`` and width 64::

    conv s2  3 -> 64, LeakyReLU(0.2)
    for k in 1..n-1:  conv s2 (no bias) -> 64 * min(2^k, 8), BatchNorm, LeakyReLU(0.2)
    conv s1 (no bias) -> 64 * min(2^n, 8), BatchNorm, LeakyReLU(0.2)
    conv s1 -> 1

At 256 px, depth 3 gives a 30x30 logit map (2.77M parameters), depth 2 a 62x62 map (0.66M).
Plain BatchNorm (not synchronised), as in the reference; real and fake images should go
through separate forward passes so that each batch is normalised with its own statistics.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from vq.core.config import Config


class PatchGANConfig(Config):
    kind: Literal["patchgan"] = "patchgan"
    in_channels: int = Field(3, gt=0)
    width: int = Field(64, gt=0)
    depth: int = Field(3, gt=0, description="stride-2 convolutions (taming's n_layers)")


class PatchGANDiscriminator(nn.Module):
    def __init__(self, config: PatchGANConfig) -> None:
        super().__init__()
        self.config = config
        width, depth = config.width, config.depth
        widths = [width * min(2**k, 8) for k in range(depth + 1)]  # 64, 128, 256, 512, 512...

        layers: list[nn.Module] = [
            nn.Conv2d(config.in_channels, widths[0], 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        for k in range(1, depth + 1):
            stride = 2 if k < depth else 1
            layers += [
                nn.Conv2d(widths[k - 1], widths[k], 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(widths[k]),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(widths[-1], 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DCGAN initialisation: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), bias 0.

        Conv biases keep PyTorch's default, as in taming-transformers.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, image: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, 1, h, w) logits
        return self.layers(image)
