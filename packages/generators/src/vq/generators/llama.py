"""LLaMA-style decoder-only transformer (the "llama" proposal network).

Pre-norm blocks with RMSNorm, rotary position embeddings on queries and keys, a SwiGLU
feed-forward and no biases anywhere; the LM head is separate from the token embedding and
starts at zero, so the first loss is exactly log(vocab) and the early gradient flows into
the trunk rather than fighting a random readout. Matches HF ``LlamaForCausalLM`` as used by
the reference (``medium`` = LlamaGen GPT-L) and LlamaGen's B / L / XL sizes.

Module names follow Hugging Face's Llama (``embed_tokens``, ``layers.{i}.self_attn.q_proj``,
``mlp.gate_proj``, ``norm``, ``lm_head``) and the rotary embedding uses the same
rotate-half convention, so a reference checkpoint loads after dropping its ``model.``
prefix.

``rope="2d"`` with ``grid_width`` switches to LlamaGen's 2D rotary embedding over the token
grid (``vq.generators.rope``): with it, LlamaGen's released class-to-image GPTs, converted by
``vq.generators.convert_llamagen``, compute their own logits in this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vq.generators.kv_cache import KVCache, causal_attention
from vq.generators.rope import RotaryEmbedding


def ffn_hidden_size(width: int, multiple_of: int = 256) -> int:
    """LLaMA's SwiGLU width: 2/3 of 4x (same FLOPs as a GELU MLP), rounded up (1024 -> 2816)."""
    hidden = int(2 * 4 * width / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int
    depth: int
    width: int
    heads: int
    ffn_hidden: int | None = None  # None: ffn_hidden_size(width)
    max_seq_len: int = 2048
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    rope: str = "1d"
    """``1d``: angles of the sequence position; ``2d``: LlamaGen's angles of each image
    token's grid row and column, the class position zeroed (``vq.generators.rope``)."""
    grid_width: int = 0
    """Image tokens per grid row; needed by ``rope="2d"`` (LlamaGen 256 px: 16, 384 px: 24)."""

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if (self.width // self.heads) % 2:
            raise ValueError("rotary embeddings need an even head dimension")
        if self.rope not in ("1d", "2d"):
            raise ValueError(f"rope must be '1d' or '2d', got {self.rope!r}")
        if self.rope == "2d" and self.grid_width < 1:
            raise ValueError("rope '2d' needs grid_width, the image tokens per grid row")
        if self.rope == "2d" and (self.width // self.heads) % 4:
            raise ValueError("2D rotary embeddings need a head dimension divisible by 4")
        if self.ffn_hidden is None:
            object.__setattr__(self, "ffn_hidden", ffn_hidden_size(self.width))


# depth / width / heads; the FFN width follows from ``ffn_hidden_size``.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"depth": 2, "width": 64, "heads": 4},
    "B": {"depth": 12, "width": 768, "heads": 12},
    "medium": {"depth": 24, "width": 1024, "heads": 16},  # reference "medium" (= LlamaGen L)
    "L": {"depth": 24, "width": 1024, "heads": 16},
    "XL": {"depth": 36, "width": 1280, "heads": 20},
}


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: Tensor) -> Tensor:
        # Normalise in fp32 (as HF does) so bf16 activations do not lose the scale.
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def init_weights(model: nn.Module, head: nn.Linear) -> None:
    """Every Linear and Embedding weight of ``model`` N(0, 0.02), RMSNorm gains 1, ``head``
    0 (the LLaMA init, shared by the bidirectional network of ``maskgit.py``)."""
    if head.weight.is_meta:
        return  # a meta-device build (counting, deferred init) holds no values to set
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
    nn.init.zeros_(head.weight)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer: int) -> None:
        super().__init__()
        self.layer, self.heads = layer, cfg.heads
        self.q_proj = nn.Linear(cfg.width, cfg.width, bias=False)
        self.k_proj = nn.Linear(cfg.width, cfg.width, bias=False)
        self.v_proj = nn.Linear(cfg.width, cfg.width, bias=False)
        self.o_proj = nn.Linear(cfg.width, cfg.width, bias=False)

    def forward(
        self, x: Tensor, rope: RotaryEmbedding, cache: KVCache | None, start: int | Tensor
    ) -> Tensor:
        B, T, C = x.shape
        q, k, v = (
            proj(x).view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, heads, T, D)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        q, k = rope(q, k, start)
        y = causal_attention(q, k, v, layer=self.layer, cache=cache, start=start)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(width, hidden, bias=False)
        self.up_proj = nn.Linear(width, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer: int) -> None:
        super().__init__()
        assert cfg.ffn_hidden is not None
        self.input_layernorm = RMSNorm(cfg.width, cfg.norm_eps)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.width, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.width, cfg.ffn_hidden)

    def forward(
        self, x: Tensor, rope: RotaryEmbedding, cache: KVCache | None, start: int | Tensor
    ) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, cache, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    """tokens (B, T) -> logits (B, T, vocab_size); see the module docstring."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size, self.max_seq_len = cfg.vocab_size, cfg.max_seq_len
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.width)
        grid_width = cfg.grid_width if cfg.rope == "2d" else None
        self.rope = RotaryEmbedding(
            cfg.width // cfg.heads, cfg.max_seq_len, cfg.rope_base, grid_width
        )
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.depth))
        self.norm = RMSNorm(cfg.width, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Linear and Embedding weights N(0, 0.02), norms 1, LM head 0 (as the reference)."""
        init_weights(self, self.lm_head)

    @classmethod
    def from_preset(cls, name: str, vocab_size: int, **overrides: int | float) -> Llama:
        if name not in PRESETS:
            raise ValueError(f"unknown llama preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(LlamaConfig(vocab_size=vocab_size, **{**PRESETS[name], **overrides}))

    def make_cache(
        self, batch_size: int, max_len: int, dtype: torch.dtype | None = None
    ) -> KVCache:
        c = self.cfg
        return KVCache.for_model(
            c.depth,
            c.heads,
            c.width,
            batch_size,
            max_len,
            like=self.embed_tokens.weight,
            dtype=dtype,
        )

    def forward(
        self, tokens: Tensor, cache: KVCache | None = None, start: int | Tensor = 0
    ) -> Tensor:
        x = self.embed_tokens(tokens)  # (B, T, C)
        for block in self.layers:
            x = block(x, self.rope, cache, start)
        return self.lm_head(self.norm(x))  # (B, T, vocab_size)
