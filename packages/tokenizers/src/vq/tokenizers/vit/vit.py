"""The BEiT-v2 style Vision Transformer of VQ-KD: its encoder, its decoder, its pixel decoder.

One architecture serves three roles, which differ only in sizes:

* **encoder** (``vqkd_encoder``, ViT-B/16): an image ``(B, 3, 224, 224)`` in [-1, 1] becomes
  ``(B, 32, 14, 14)``, the features the quantizer rounds to codes;
* **decoder** (``vqkd_decoder``, one block): the quantized grid ``(B, 32, 14, 14)`` is read
  with ``patch_size=1`` (every token is one grid cell) and mapped to teacher features
  ``(B, D_teacher, 14, 14)``;
* **pixel decoder** (``vqkd``, ``vqkd_large``): the same, but each token emits a 16x16x3
  pixel patch (``out_patch_size=16``), unpatchified to ``(B, 3, 224, 224)``.

Layout::

    patch_embed   Conv2d(in, C, kernel=stride=patch_size)      (B, C, h, w) -> (B, h*w, C)
    cls_token     learned, prepended                           (B, 1 + h*w, C)
    pos_embed     learned for the native grid, bicubic-resized for other grids
    blocks        depth x [x + Attn(LN(x)); x + MLP(LN(x))], LayerNorm eps 1e-6,
                  attention with q/v biases and no k bias, MLP ratio 4 with GELU
    fc_norm       LayerNorm of the patch tokens (the cls token is dropped)
    task_layer    Linear(C, C) - Tanh - Linear(C, out_dim * out_patch_size**2)

A 224 px encoder has a 14x14 native grid; at 256 px the position embeddings are
interpolated to 16x16, which is how VQ-KD tokens are produced for 256 px generation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field
from torch import Tensor, nn

from vq.core.config import Config

LAYER_NORM_EPS = 1e-6
INIT_STD = 0.02


class ViTConfig(Config):
    """Sizes of a ViT; ``ViTConfig.preset(name, **overrides)`` gives the VQ-KD ones."""

    grid_size: int = Field(14, gt=0, description="native token grid side (pos-embed size)")
    patch_size: int = Field(16, gt=0, description="input pixels (or cells) per token side")
    in_chans: int = Field(3, gt=0)
    embed_dim: int = Field(768, gt=0)
    depth: int = Field(12, gt=0)
    num_heads: int = Field(12, gt=0)
    mlp_ratio: float = Field(4.0, gt=0)
    out_dim: int = Field(32, gt=0, description="output channels per output pixel")
    out_patch_size: int = Field(
        1, gt=0, description="output pixels per token side; >1 unpatchifies to an image"
    )

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ViTConfig:
        """The preset ``name`` of ``PRESETS`` with fields overridden."""
        if name not in PRESETS:
            raise KeyError(f"unknown ViT preset {name!r}; choices: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    # ViT-B/16 over 224 px images -> 32-d features on a 14x14 grid.
    "vqkd_encoder": {"grid_size": 14, "patch_size": 16, "in_chans": 3, "embed_dim": 768,
                     "depth": 12, "num_heads": 12, "out_dim": 32},
    # One block from the 32-d code grid to teacher features (out_dim = teacher dim: CLIP 512).
    "vqkd_decoder": {"grid_size": 14, "patch_size": 1, "in_chans": 32, "embed_dim": 768,
                     "depth": 1, "num_heads": 12, "out_dim": 512},
    # Pixel decoders: code grid -> RGB, one 16x16 patch per token (in_chans 768 for Cluster).
    "vqkd": {"grid_size": 14, "patch_size": 1, "in_chans": 32, "embed_dim": 768,
             "depth": 12, "num_heads": 12, "out_dim": 3, "out_patch_size": 16},
    "vqkd_large": {"grid_size": 14, "patch_size": 1, "in_chans": 32, "embed_dim": 1280,
                   "depth": 32, "num_heads": 16, "out_dim": 3, "out_patch_size": 16},
    # For tests: 32 px images, 4x4 grid.
    "tiny": {"grid_size": 4, "patch_size": 8, "in_chans": 3, "embed_dim": 32,
             "depth": 2, "num_heads": 2, "out_dim": 8},
}  # fmt: skip


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: ``(B, in, H, W) -> (B, C, H/p, W/p)``."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"input {height}x{width} is not a multiple of the patch size {self.patch_size}"
            )
        return self.proj(x)


class Attention(nn.Module):
    """Multi-head self-attention with learned q and v biases and none for k (as BEiT).

    A k bias adds the same term ``q . b_k`` to every logit of a query row and so cancels in
    the softmax; BEiT leaves it out and we keep its parameter layout.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, N, C)
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias)  # (B, N, 3C)
        q, k, v = rearrange(qkv, "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        x = F.scaled_dot_product_attention(q, k, v)  # scale head_dim**-0.5, (B, h, N, d)
        return self.proj(rearrange(x, "b h n d -> b n (h d)"))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def unpatchify(tokens: Tensor, height: int, patch_size: int) -> Tensor:
    """``(B, h*w, p*p*C)`` tokens, each a ``p x p x C`` patch in (row, column, channel)
    order, to the image ``(B, C, h*p, w*p)``."""
    return rearrange(
        tokens, "b (h w) (p q c) -> b c (h p) (w q)", h=height, p=patch_size, q=patch_size
    )


class ViT(nn.Module):
    """``forward(x: (B, in_chans, H, W)) -> (B, out_dim, H/p * q, W/p * q)``, where p is
    ``patch_size`` and q is ``out_patch_size``."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config.in_chans, dim, config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.grid_size**2, dim))
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.fc_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.task_layer = nn.Sequential(
            nn.Linear(dim, dim),
            nn.Tanh(),
            nn.Linear(dim, config.out_dim * config.out_patch_size**2),
        )
        # Resized position embeddings per grid, reused while pos_embed is unchanged and
        # no gradient has to flow into it (see `position_embedding`).
        self._pos_cache: dict[tuple[int, int], tuple[tuple[Any, ...], Tensor]] = {}
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """BEiT v2's init: truncated normal (std 0.02) for Linear weights and the cls and
        position embeddings, zero biases, LayerNorm 1/0; the residual-branch outputs
        (``attn.proj``, ``mlp.fc2``) of block ``l`` (1-based) are scaled by
        ``1 / sqrt(2 l)`` so that deep stacks start near the identity. The patch-embedding
        convolution keeps PyTorch's default init, as in BEiT."""
        nn.init.trunc_normal_(self.pos_embed, std=INIT_STD)
        nn.init.trunc_normal_(self.cls_token, std=INIT_STD)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=INIT_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for layer_id, block in enumerate(self.blocks, start=1):
            block.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
            block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))

    def position_embedding(self, height: int, width: int) -> Tensor:
        """Position embeddings ``(1, 1 + height*width, C)`` for a token grid.

        The native grid uses ``pos_embed`` itself. Other grids resize its patch part
        bicubically (the cls entry is kept). The result is cached per grid whenever no
        gradient must reach ``pos_embed`` (inference, a frozen encoder); the cache entry is
        stamped with the parameter's version counter, storage, dtype and device, so an
        optimizer step, a ``load_state_dict`` or a ``.to()`` invalidates it.
        """
        grid = self.config.grid_size
        if (height, width) == (grid, grid):
            return self.pos_embed
        param = self.pos_embed
        cacheable = not (torch.is_grad_enabled() and param.requires_grad)
        stamp = (param._version, param.data_ptr(), param.dtype, param.device)
        cached = self._pos_cache.get((height, width))
        if cacheable and cached is not None and cached[0] == stamp:
            return cached[1]
        cls_pos, patch_pos = param[:, :1], param[:, 1:]  # (1, 1, C), (1, g*g, C)
        patch_pos = rearrange(patch_pos, "1 (h w) c -> 1 c h w", h=grid)
        patch_pos = F.interpolate(
            patch_pos.float(), size=(height, width), mode="bicubic", align_corners=False
        ).to(param.dtype)
        patch_pos = rearrange(patch_pos, "1 c h w -> 1 (h w) c")
        resized = torch.cat([cls_pos, patch_pos], dim=1)  # (1, 1 + height*width, C)
        if cacheable:
            self._pos_cache[(height, width)] = (stamp, resized)
        return resized

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)  # (B, C, h, w)
        height, width = x.shape[-2:]
        x = rearrange(x, "b c h w -> b (h w) c")
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, C)
        x = torch.cat([cls, x], dim=1) + self.position_embedding(height, width)
        for block in self.blocks:
            x = block(x)  # (B, 1 + h*w, C)
        x = self.task_layer(self.fc_norm(x[:, 1:]))  # (B, h*w, out_dim * q*q)
        if self.config.out_patch_size == 1:
            return rearrange(x, "b (h w) c -> b c h w", h=height)  # (B, out_dim, h, w)
        return unpatchify(x, height, self.config.out_patch_size)  # (B, out_dim, h*q, w*q)
