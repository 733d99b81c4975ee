"""StyleGAN2 discriminator in plain PyTorch (the reference needs mmcv's CUDA ops; we do not).

Layout for an ``image_size`` of ``2^k``::

    from-RGB   1x1 conv 3 -> C[2^k], fused bias + LeakyReLU
    k-2 residual blocks, each halving the resolution down to 4x4:
               conv 3x3 (C_in -> C_in) + act, blur + conv 3x3 s2 (C_in -> C_out) + act,
               shortcut blur + 1x1 s2 (no bias, no act); out = (main + shortcut) / sqrt(2)
    minibatch standard deviation (group 4): one more channel
    conv 3x3 (C[4] + 1 -> C[4]) + act
    linear (C[4] * 16 -> C[4]) + act, linear (C[4] -> 1)

Every conv and linear uses the equalised learning rate: weights are drawn N(0, 1) and
scaled by ``1 / sqrt(fan_in)`` at run time, so Adam sees every layer at the same scale.
"Act" is StyleGAN2's fused bias + LeakyReLU(0.2) times ``sqrt(2)`` (which keeps the
activations' second moment), written here as two torch ops.
"""

from __future__ import annotations

import math
from typing import Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from vq.core.config import Config

# Channels per resolution of the reference (StyleGAN2 with channel multiplier 2).
DEFAULT_CHANNELS: dict[int, int] = {
    4: 512,
    8: 512,
    16: 512,
    32: 512,
    64: 512,
    128: 256,
    256: 128,
    512: 64,
    1024: 32,
}
BLUR_KERNEL = (1.0, 3.0, 3.0, 1.0)
LEAKY_SLOPE = 0.2
ACTIVATION_GAIN = math.sqrt(2.0)


class StyleGAN2DiscriminatorConfig(Config):
    kind: Literal["stylegan2"] = "stylegan2"
    image_size: int = Field(256, ge=8)
    in_channels: int = Field(3, gt=0)
    channels: dict[int, int] = Field(
        default_factory=lambda: dict(DEFAULT_CHANNELS),
        description="channels of the feature maps at each resolution 4 .. image_size",
    )
    stddev_group: int = Field(4, gt=0, description="minibatch stddev group size")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.image_size & (self.image_size - 1):
            raise ValueError(f"image_size must be a power of two, got {self.image_size}")
        needed = [2**k for k in range(2, int(math.log2(self.image_size)) + 1)]
        missing = [r for r in needed if r not in self.channels]
        if missing:
            raise ValueError(f"channels has no entry for resolutions {missing}")
        return self


def fused_bias_leaky_relu(x: Tensor, bias: Tensor) -> Tensor:
    """``leaky_relu(x + bias, 0.2) * sqrt(2)``; ``bias`` is per channel (dim 1)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return F.leaky_relu(x + bias.view(shape), LEAKY_SLOPE) * ACTIVATION_GAIN


class EqualConv2d(nn.Module):
    """Conv whose N(0, 1) weight is scaled by ``1 / sqrt(fan_in)`` in forward."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class EqualLinear(nn.Module):
    """Linear with the equalised learning rate, optionally followed by the fused activation."""

    def __init__(self, in_features: int, out_features: int, activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = 1.0 / math.sqrt(in_features)
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:  # (B, in) -> (B, out)
        if self.activate:
            return fused_bias_leaky_relu(F.linear(x, self.weight * self.scale), self.bias)
        return F.linear(x, self.weight * self.scale, self.bias)


class Blur(nn.Module):
    """Depthwise FIR filter with the normalised outer product of [1, 3, 3, 1] (anti-aliasing
    before a stride-2 conv; the kernel is symmetric, so correlation equals convolution)."""

    kernel: Tensor

    def __init__(self, channels: int, pad: tuple[int, int]) -> None:
        super().__init__()
        k = torch.tensor(BLUR_KERNEL)
        k = torch.outer(k, k)
        self.register_buffer("kernel", (k / k.sum()).expand(channels, 1, 4, 4).clone(), False)
        self.pad = (pad[0], pad[1], pad[0], pad[1])  # left, right, top, bottom

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H + sum(pad) - 3, ...)
        kernel = self.kernel.to(x.dtype)
        return F.conv2d(F.pad(x, self.pad), kernel, groups=x.shape[1])


class ConvLayer(nn.Module):
    """[blur +] equalised conv [+ fused bias leaky ReLU]; stride 2 when downsampling.

    ``bias`` only matters without activation (the activation always carries a bias)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        activate: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if downsample:
            # Pad so that blur + stride-2 conv maps H to H/2 exactly (StyleGAN2's choice).
            p = (len(BLUR_KERNEL) - 2) + (kernel_size - 1)
            self.blur: Blur | None = Blur(in_channels, ((p + 1) // 2, p // 2))
            stride, padding = 2, 0
        else:
            self.blur = None
            stride, padding = 1, kernel_size // 2
        self.conv = EqualConv2d(
            in_channels, out_channels, kernel_size, stride, padding, bias=bias and not activate
        )
        # With an activation, the bias lives in the fused bias + LeakyReLU.
        self.act_bias = nn.Parameter(torch.zeros(out_channels)) if activate else None

    def forward(self, x: Tensor) -> Tensor:
        if self.blur is not None:
            x = self.blur(x)
        x = self.conv(x)
        if self.act_bias is not None:
            x = fused_bias_leaky_relu(x, self.act_bias)
        return x


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True)
        self.skip = ConvLayer(
            in_channels, out_channels, 1, downsample=True, activate=False, bias=False
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, H/2, W/2)
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


def minibatch_stddev(x: Tensor, group_size: int = 4, eps: float = 1e-8) -> Tensor:
    """Append one channel: the mean over (C, H, W) of the per-feature standard deviation
    across a group of samples, so the discriminator can see a collapsed batch.

    Samples ``i`` and ``j`` share a group when ``i = j (mod B / G)`` with
    ``G = min(group_size, B)``.
    """
    b, c, h, w = x.shape
    group = min(group_size, b)
    if b % group:
        raise ValueError(f"batch size {b} is not a multiple of the stddev group {group}")
    y = x.reshape(group, b // group, c, h, w)  # (G, B/G, C, H, W)
    y = (y.var(dim=0, unbiased=False) + eps).sqrt()  # (B/G, C, H, W)
    y = y.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)  # (B/G, 1, 1, 1)
    y = y.repeat(group, 1, h, w)  # (B, 1, H, W)
    return torch.cat([x, y], dim=1)  # (B, C + 1, H, W)


class StyleGAN2Discriminator(nn.Module):
    def __init__(self, config: StyleGAN2DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.channels
        size = config.image_size
        self.from_rgb = ConvLayer(config.in_channels, channels[size], 1)
        blocks = []
        while size > 4:
            blocks.append(ResidualBlock(channels[size], channels[size // 2]))
            size //= 2
        self.blocks = nn.Sequential(*blocks)
        c4 = channels[4]
        self.final_conv = ConvLayer(c4 + 1, c4, 3)
        self.final_linear = nn.Sequential(
            EqualLinear(c4 * 4 * 4, c4, activate=True), EqualLinear(c4, 1)
        )

    def forward(self, image: Tensor) -> Tensor:  # (B, 3, S, S) -> (B, 1) logits
        if image.shape[-2:] != (self.config.image_size,) * 2:
            raise ValueError(
                f"expected {self.config.image_size} px images, got {tuple(image.shape[-2:])}"
            )
        x = self.blocks(self.from_rgb(image))  # (B, C[4], 4, 4)
        x = minibatch_stddev(x, self.config.stddev_group)  # (B, C[4] + 1, 4, 4)
        x = self.final_conv(x)  # (B, C[4], 4, 4)
        return self.final_linear(x.flatten(1))  # (B, 1)
