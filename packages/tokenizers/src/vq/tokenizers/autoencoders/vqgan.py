"""The taming-transformers VQGAN encoder and decoder (convolutional, GroupNorm, SiLU).

The encoder maps an image ``(B, 3, H, W)`` to a latent ``(B, C_z, H/f, W/f)`` with
``f = 2 ** (len(width_mults) - 1)``; the decoder maps it back. At the default ("f16")
sizes, a 256 px image becomes a 16x16 grid and the two halves hold 29.3M and 42.4M
parameters.

Layout, encoder (f16)::

    in_conv 3x3  3 -> 128
    level 0..4   widths 128, 128, 256, 256, 512; `depth` residual blocks each,
                 self-attention after every block of the last (lowest-resolution) level,
                 zero-pad (0, 1, 0, 1) + conv 3x3 stride 2 after every level but the last
    mid          Res - Attn - Res at 512
    projector    GN - SiLU - conv 3x3 512 -> 256

The decoder mirrors it: in_conv 256 -> 512, mid block, levels of widths 512, 256, 256,
128, 128 (attention in level 0), nearest x2 + conv 3x3 after every level but the last,
projector GN - SiLU - conv 3x3 128 -> 3.

Attention is single-head self-attention over the ``h * w`` positions, computed with
``F.scaled_dot_product_attention`` but holding exactly the parameters of
``nn.MultiheadAttention(C, 1)`` (``in_proj_weight/bias`` with q, k, v stacked, and
``out_proj``), so the 1x1-conv q/k/v/proj_out weights of taming checkpoints convert by a
reshape and a concatenation.
"""

from __future__ import annotations

import itertools
from typing import Any, Self

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from vq.core.config import Config

GROUP_NORM_EPS = 1e-6


class _VQGANConfig(Config):
    """Fields shared by the encoder and the decoder."""

    width: int = Field(128, gt=0, description="channels of a width multiplier of 1")
    width_mults: tuple[int, ...] = Field(min_length=1)
    depth: int = Field(gt=0, description="residual blocks per level")
    attention: bool = Field(True, description="self-attention in the lowest-resolution level")
    mid_block: bool = Field(True, description="Res - Attn - Res block at the lowest resolution")
    norm_groups: int = Field(32, gt=0, description="GroupNorm groups; must divide every width")

    @model_validator(mode="after")
    def _groups_divide_widths(self) -> Self:
        for mult in self.width_mults:
            if (self.width * mult) % self.norm_groups:
                raise ValueError(
                    f"norm_groups={self.norm_groups} does not divide the width "
                    f"{self.width * mult} (= width {self.width} x mult {mult})"
                )
        return self

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.width_mults) - 1)


class VQGANEncoderConfig(_VQGANConfig):
    in_channels: int = Field(3, gt=0)
    out_channels: int = Field(256, gt=0, description="latent channels C_z")
    width_mults: tuple[int, ...] = Field((1, 1, 2, 2, 4), min_length=1)
    depth: int = Field(2, gt=0)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> VQGANEncoderConfig:
        """The encoder of size preset ``name`` (see ``PRESETS``), with fields overridden."""
        return cls(**{**_preset(name)["encoder"], **overrides})


class VQGANDecoderConfig(_VQGANConfig):
    in_channels: int = Field(256, gt=0, description="latent channels C_z")
    out_channels: int = Field(3, gt=0)
    width_mults: tuple[int, ...] = Field((4, 2, 2, 1, 1), min_length=1)
    depth: int = Field(3, gt=0)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> VQGANDecoderConfig:
        """The decoder of size preset ``name`` (see ``PRESETS``), with fields overridden."""
        return cls(**{**_preset(name)["decoder"], **overrides})


# Size presets. "f16" is the taming ImageNet model; "f8" has one resampling less (LlamaGen's
# f8 variants); "tiny" (f4, width 32) is for tests and CPU demos.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "f16": {
        "encoder": {"width": 128, "width_mults": (1, 1, 2, 2, 4), "depth": 2},
        "decoder": {"width": 128, "width_mults": (4, 2, 2, 1, 1), "depth": 3},
    },
    "f8": {
        "encoder": {"width": 128, "width_mults": (1, 1, 2, 4), "depth": 2},
        "decoder": {"width": 128, "width_mults": (4, 2, 1, 1), "depth": 3},
    },
    "tiny": {
        "encoder": {
            "width": 32,
            "width_mults": (1, 2, 2),
            "depth": 1,
            "norm_groups": 8,
            "out_channels": 32,
        },
        "decoder": {
            "width": 32,
            "width_mults": (2, 2, 1),
            "depth": 1,
            "norm_groups": 8,
            "in_channels": 32,
        },
    },
}


def _preset(name: str) -> dict[str, dict[str, Any]]:
    if name not in PRESETS:
        raise ValueError(f"unknown VQGAN preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def _group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=GROUP_NORM_EPS)


class ResidualBlock(nn.Module):
    """GN - SiLU - conv 3x3 - GN - SiLU - conv 3x3, plus a 1x1 shortcut when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(out_channels, norm_groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class AttentionBlock(nn.Module):
    """GroupNorm, then single-head self-attention over all positions, with a residual.

    The parameters are those of ``nn.MultiheadAttention(channels, 1)`` (same names, shapes
    and initialisation), the computation is ``F.scaled_dot_product_attention`` (a fused
    kernel where available).
    """

    def __init__(self, channels: int, norm_groups: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels, norm_groups)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * channels, channels))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * channels))
        self.out_proj = nn.Linear(channels, channels)
        # nn.MultiheadAttention's initialisation.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
        qkv = F.linear(tokens, self.in_proj_weight, self.in_proj_bias)  # (B, H*W, 3C)
        q, k, v = qkv.unsqueeze(1).chunk(3, dim=-1)  # 3 x (B, 1, H*W, C): one head
        attended = F.scaled_dot_product_attention(q, k, v).squeeze(1)  # (B, H*W, C)
        out = self.out_proj(attended).transpose(1, 2).reshape(b, c, h, w)
        return x + out


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then conv 3x3 stride 2 (taming's asymmetric pad)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H/2, W/2)
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then conv 3x3.

    The interpolation runs in fp32: it is exact there and costs nothing, and it keeps the
    op away from half-precision kernels that some backends lack or implement differently.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, 2H, 2W)
        up = F.interpolate(x.float(), scale_factor=2.0, mode="nearest").to(x.dtype)
        return self.conv(up)


class Level(nn.Module):
    """``depth`` residual blocks (each followed by attention if asked), then a resampling."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int,
        attention: bool,
        resample: type[Downsample] | type[Upsample] | None,
        norm_groups: int,
    ) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * depth
        self.blocks = nn.ModuleList(
            ResidualBlock(cin, cout, norm_groups) for cin, cout in itertools.pairwise(widths)
        )
        self.attentions = nn.ModuleList(
            AttentionBlock(out_channels, norm_groups) for _ in range(depth if attention else 0)
        )
        self.resample = resample(out_channels) if resample is not None else None

    def forward(self, x: Tensor) -> Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x)
            if self.attentions:
                x = self.attentions[i](x)
        if self.resample is not None:
            x = self.resample(x)
        return x


class MidBlock(nn.Module):
    """Res - Attn - Res at the lowest resolution (taming's ``mid``)."""

    def __init__(self, channels: int, norm_groups: int) -> None:
        super().__init__()
        self.block1 = ResidualBlock(channels, channels, norm_groups)
        self.attention = AttentionBlock(channels, norm_groups)
        self.block2 = ResidualBlock(channels, channels, norm_groups)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, h, w) -> (B, C, h, w)
        return self.block2(self.attention(self.block1(x)))


class VQGANEncoder(nn.Module):
    def __init__(self, config: VQGANEncoderConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.width * m for m in config.width_mults]
        last = len(widths) - 1
        self.in_conv = nn.Conv2d(config.in_channels, widths[0], 3, padding=1)
        self.levels = nn.ModuleList(
            Level(
                in_channels=widths[max(i - 1, 0)],
                out_channels=widths[i],
                depth=config.depth,
                attention=config.attention and i == last,
                resample=Downsample if i < last else None,
                norm_groups=config.norm_groups,
            )
            for i in range(len(widths))
        )
        self.mid = MidBlock(widths[-1], config.norm_groups) if config.mid_block else None
        self.out_norm = _group_norm(widths[-1], config.norm_groups)
        self.out_conv = nn.Conv2d(widths[-1], config.out_channels, 3, padding=1)

    @property
    def downsample_factor(self) -> int:
        return self.config.downsample_factor

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    def forward(self, image: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, C_z, H/f, W/f)
        x = self.in_conv(image)  # (B, width, H, W)
        for level in self.levels:
            x = level(x)  # (B, width * mults[-1], H/f, W/f) after the last level
        if self.mid is not None:
            x = self.mid(x)
        return self.out_conv(F.silu(self.out_norm(x)))


class VQGANDecoder(nn.Module):
    def __init__(self, config: VQGANDecoderConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.width * m for m in config.width_mults]
        last = len(widths) - 1
        self.in_conv = nn.Conv2d(config.in_channels, widths[0], 3, padding=1)
        self.mid = MidBlock(widths[0], config.norm_groups) if config.mid_block else None
        self.levels = nn.ModuleList(
            Level(
                in_channels=widths[max(i - 1, 0)],
                out_channels=widths[i],
                depth=config.depth,
                attention=config.attention and i == 0,
                resample=Upsample if i < last else None,
                norm_groups=config.norm_groups,
            )
            for i in range(len(widths))
        )
        self.out_norm = _group_norm(widths[-1], config.norm_groups)
        self.out_conv = nn.Conv2d(widths[-1], config.out_channels, 3, padding=1)

    @property
    def upsample_factor(self) -> int:
        return self.config.downsample_factor

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def last_layer_weight(self) -> nn.Parameter:
        """The final conv weight: the GAN's adaptive generator weight compares gradients here."""
        return self.out_conv.weight

    def forward(self, z: Tensor) -> Tensor:  # (B, C_z, h, w) -> (B, 3, h*f, w*f)
        x = self.in_conv(z)  # (B, width * mults[0], h, w)
        if self.mid is not None:
            x = self.mid(x)
        for level in self.levels:
            x = level(x)  # (B, width * mults[-1], h*f, w*f) after the last level
        return self.out_conv(F.silu(self.out_norm(x)))


__all__ = [
    "PRESETS",
    "AttentionBlock",
    "Downsample",
    "MidBlock",
    "ResidualBlock",
    "Upsample",
    "VQGANDecoder",
    "VQGANDecoderConfig",
    "VQGANEncoder",
    "VQGANEncoderConfig",
]
