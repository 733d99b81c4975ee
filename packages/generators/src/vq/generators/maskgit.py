"""Bidirectional transformer over the token grid (the non-autoregressive "maskgit" network).

The NAR proposal network of MaskGIT / MAGE: it sees the class and the whole image-token grid
at once, some cells replaced by a mask token, and predicts a code for every cell. Trained by
``vq.generators.masking`` (cross-entropy on the masked cells), sampled by
``vq.generators.parallel_decoding`` (a few steps, each revealing the most confident cells).

Input sequence, 1 + h*w positions::

    position 0          the class: id in [0, num_classes), or num_classes, the null class of
                        classifier-free guidance (always present: one embedding row)
    positions 1..h*w    the grid in raster order: a code in [0, codebook_size), or
                        codebook_size, the mask token

Classes and codes have their own embedding tables (``embed_classes``, ``embed_tokens``), so
no id offsets are needed and the output is the codebook only: logits (B, h*w, codebook_size)
of the grid positions (the class position is read by attention, never scored).

Blocks are the LLaMA blocks of ``vq.generators.llama`` (pre-norm RMSNorm, SwiGLU, no biases,
the same N(0, 0.02) init with the head at zero, so the first loss is exactly
log(codebook_size)) with full, non-causal attention. Positions are learned absolute
embeddings (``embed_positions``, one row per sequence position), as in MaskGIT and MAGE: the
grid has a fixed size per tokenizer, and a bidirectional model has no causal order from
which to infer where a token sits, so each position gets its own learned vector; a rotary
scheme would bring nothing for a fixed grid and would have to pick a convention for the class
position. The sizes are the AR presets (``llama.PRESETS``), so an AR and a NAR network of the
same name have the same trunk.

The API the training and sampling code uses::

    model = MaskGIT.from_preset("B", codebook_size=8192, num_classes=1000, grid=(16, 16))
    logits = model(classes, tokens)  # (B,), (B, h*w) ids with mask_id -> (B, h*w, K)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vq.generators.llama import PRESETS as LLAMA_PRESETS
from vq.generators.llama import RMSNorm, SwiGLU, ffn_hidden_size, init_weights


@dataclass(frozen=True)
class MaskGITConfig:
    codebook_size: int
    num_classes: int
    grid: tuple[int, int]  # (h, w) of the tokenizer's token grid
    depth: int
    width: int
    heads: int
    ffn_hidden: int | None = None  # None: ffn_hidden_size(width)
    norm_eps: float = 1e-5
    dropout: float = 0.0
    """Training-time dropout of attention weights and of each residual branch (MaskGIT
    used 0.1); 0 keeps the LLaMA blocks exactly."""

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.codebook_size < 1 or self.num_classes < 1:
            raise ValueError("codebook_size and num_classes must be at least 1")
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"grid must be (h, w) with h, w >= 1, got {self.grid}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "grid", tuple(self.grid))
        if self.ffn_hidden is None:
            object.__setattr__(self, "ffn_hidden", ffn_hidden_size(self.width))

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]


# The AR sizes (tiny / B / medium / L / XL), so AR and NAR networks of one name compare.
PRESETS: dict[str, dict[str, int]] = dict(LLAMA_PRESETS)


class FullAttention(nn.Module):
    """Multi-head self-attention in which every position sees every position."""

    def __init__(self, cfg: MaskGITConfig) -> None:
        super().__init__()
        self.heads, self.dropout = cfg.heads, cfg.dropout
        self.qkv_proj = nn.Linear(cfg.width, 3 * cfg.width, bias=False)
        self.o_proj = nn.Linear(cfg.width, cfg.width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        qkv = self.qkv_proj(x).view(B, T, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, T, D)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)  # no mask: full
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class BidirectionalBlock(nn.Module):
    def __init__(self, cfg: MaskGITConfig) -> None:
        super().__init__()
        assert cfg.ffn_hidden is not None
        self.attn_norm = RMSNorm(cfg.width, cfg.norm_eps)
        self.attn = FullAttention(cfg)
        self.mlp_norm = RMSNorm(cfg.width, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.width, cfg.ffn_hidden)
        self.residual_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.residual_dropout(self.attn(self.attn_norm(x)))
        return x + self.residual_dropout(self.mlp(self.mlp_norm(x)))


class MaskGIT(nn.Module):
    """classes (B,), tokens (B, h*w) -> logits (B, h*w, codebook_size); see the module
    docstring for the ids."""

    def __init__(self, cfg: MaskGITConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.codebook_size, self.num_classes, self.grid = (
            cfg.codebook_size,
            cfg.num_classes,
            cfg.grid,
        )
        self.embed_classes = nn.Embedding(cfg.num_classes + 1, cfg.width)  # + null class
        self.embed_tokens = nn.Embedding(cfg.codebook_size + 1, cfg.width)  # + mask token
        self.embed_positions = nn.Embedding(1 + cfg.num_tokens, cfg.width)
        self.layers = nn.ModuleList(BidirectionalBlock(cfg) for _ in range(cfg.depth))
        self.norm = RMSNorm(cfg.width, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.width, cfg.codebook_size, bias=False)
        self.reset_parameters()

    @property
    def mask_id(self) -> int:
        return self.codebook_size

    @property
    def null_id(self) -> int:
        return self.num_classes

    def reset_parameters(self) -> None:
        """Embeddings and linear weights N(0, 0.02), norms 1, head 0 (``llama.init_weights``)."""
        init_weights(self, self.lm_head)

    @classmethod
    def from_preset(
        cls,
        name: str,
        codebook_size: int,
        num_classes: int,
        grid: tuple[int, int],
        **overrides: int | float,
    ) -> MaskGIT:
        if name not in PRESETS:
            raise ValueError(f"unknown maskgit preset {name!r}; choose from {sorted(PRESETS)}")
        fields = {**PRESETS[name], **overrides}
        return cls(MaskGITConfig(codebook_size, num_classes, grid, **fields))

    def forward(self, classes: Tensor, tokens: Tensor) -> Tensor:
        if tokens.shape[1] != self.cfg.num_tokens:
            raise ValueError(
                f"{tokens.shape[1]} tokens per sample, the {self.grid} grid has "
                f"{self.cfg.num_tokens}"
            )
        x = torch.cat((self.embed_classes(classes)[:, None], self.embed_tokens(tokens)), dim=1)
        x = x + self.embed_positions.weight  # (B, 1 + h*w, C)
        for block in self.layers:
            x = block(x)
        return self.lm_head(self.norm(x[:, 1:]))  # (B, h*w, codebook_size)
