"""GPT-2 decoder-only transformer (the "gpt2" proposal network).

Pre-norm blocks with LayerNorm, learned absolute positions, a 4x GELU(tanh) MLP, biases
everywhere, and an LM head tied to the token embedding. Parameter names follow Hugging
Face's ``GPT2LMHeadModel`` (``transformer.wte``, ``transformer.h.{i}.attn.c_attn``, ...), so
the reference's pretrained ``gpt2-medium`` text weights load from a local directory
(:func:`load_hf_gpt2`) without the ``transformers`` package. HF stores these projections as
``Conv1D`` with (in, out) weights; here they are ``nn.Linear`` (out, in) and are transposed
once at load time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vq.core.errors import UserError
from vq.core.tensorfiles import read_tensors
from vq.generators.kv_cache import KVCache, causal_attention


@dataclass(frozen=True)
class GPT2Config:
    vocab_size: int
    depth: int
    width: int
    heads: int
    max_seq_len: int = 1024  # HF n_positions
    dropout: float = 0.1  # HF resid_pdrop = embd_pdrop = attn_pdrop
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")


# depth / width / heads of OpenAI's GPT-2 sizes (HF "gpt2", "gpt2-medium", ...) plus "tiny".
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"depth": 2, "width": 64, "heads": 4, "max_seq_len": 64},
    "small": {"depth": 12, "width": 768, "heads": 12},
    "medium": {"depth": 24, "width": 1024, "heads": 16},  # reference: pretrained gpt2-medium
    "large": {"depth": 36, "width": 1280, "heads": 20},
    "xl": {"depth": 48, "width": 1600, "heads": 25},
}

# HF weights stored (in, out) by transformers' Conv1D.
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# HF causal-mask buffers (older exports) and the tied head: not parameters of their own here.
_SKIPPED = (".attn.bias", ".attn.masked_bias")
_TIED = "lm_head.weight"
HOW_TO_GET = (
    "download config.json and model.safetensors of the Hugging Face repository "
    "'openai-community/gpt2-medium' (e.g. `huggingface-cli download openai-community/"
    "gpt2-medium config.json model.safetensors --local-dir pretrained/huggingface/gpt2-medium`)"
)


class Attention(nn.Module):
    def __init__(self, cfg: GPT2Config, layer: int) -> None:
        super().__init__()
        self.layer, self.heads, self.dropout = layer, cfg.heads, cfg.dropout
        self.c_attn = nn.Linear(cfg.width, 3 * cfg.width)
        self.c_proj = nn.Linear(cfg.width, cfg.width)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, cache: KVCache | None, start: int | Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = (
            t.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, heads, T, D)
            for t in self.c_attn(x).split(C, dim=-1)
        )
        p = self.dropout if self.training else 0.0
        y = causal_attention(q, k, v, layer=self.layer, cache=cache, start=start, dropout_p=p)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))


class MLP(nn.Module):
    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.width, 4 * cfg.width)
        self.c_proj = nn.Linear(4 * cfg.width, cfg.width)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, cfg: GPT2Config, layer: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.attn = Attention(cfg, layer)
        self.ln_2 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor, cache: KVCache | None, start: int | Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, start)
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """tokens (B, T) -> logits (B, T, vocab_size); see the module docstring."""

    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size, self.max_seq_len = cfg.vocab_size, cfg.max_seq_len
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(cfg.vocab_size, cfg.width),
                "wpe": nn.Embedding(cfg.max_seq_len, cfg.width),
                "drop": nn.Dropout(cfg.dropout),
                "h": nn.ModuleList(Block(cfg, i) for i in range(cfg.depth)),
                "ln_f": nn.LayerNorm(cfg.width, eps=cfg.norm_eps),
            }
        )
        self.lm_head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's init: N(0, 0.02), residual output projections scaled by 1/sqrt(2 depth)."""
        if self.lm_head.weight.is_meta:
            return  # a meta-device build (counting, deferred init) holds no values to set
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                std = 0.02 / math.sqrt(2 * self.cfg.depth) if name.endswith("c_proj") else 0.02
                nn.init.normal_(module.weight, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    @classmethod
    def from_preset(cls, name: str, vocab_size: int, **overrides: int | float) -> GPT2:
        if name not in PRESETS:
            raise ValueError(f"unknown gpt2 preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(GPT2Config(vocab_size=vocab_size, **{**PRESETS[name], **overrides}))

    @classmethod
    def from_pretrained(cls, directory: str | Path, vocab_size: int, dropout: float = 0.1) -> GPT2:
        """Build the size described by ``directory/config.json`` and load its weights."""
        hf = read_hf_config(directory)
        cfg = GPT2Config(
            vocab_size=vocab_size,
            depth=hf["n_layer"],
            width=hf["n_embd"],
            heads=hf["n_head"],
            max_seq_len=hf["n_positions"],
            dropout=dropout,
            norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        )
        model = cls(cfg)
        load_hf_gpt2(model, directory)
        return model

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
            like=self.transformer.wte.weight,
            dtype=dtype,
        )

    def forward(
        self, tokens: Tensor, cache: KVCache | None = None, start: int | Tensor = 0
    ) -> Tensor:
        T = tokens.shape[1]
        if not isinstance(start, Tensor) and start + T > self.max_seq_len:
            raise ValueError(f"position {start + T - 1} exceeds max_seq_len {self.max_seq_len}")
        positions = start + torch.arange(T, device=tokens.device)  # (T,)
        x = self.transformer.wte(tokens) + self.transformer.wpe(positions)  # (B, T, C)
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, cache, start)
        return self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab_size)


def read_hf_config(directory: str | Path) -> dict:
    """The fields of an HF GPT-2 ``config.json`` that define the architecture."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise UserError(f"GPT-2 config not found: {path} is missing; {HOW_TO_GET}")
    hf = json.loads(path.read_text())
    missing = [
        k for k in ("n_layer", "n_embd", "n_head", "n_positions", "vocab_size") if k not in hf
    ]
    if missing:
        raise UserError(f"{path} is not a GPT-2 config: keys {missing} are missing")
    if hf.get("activation_function", "gelu_new") != "gelu_new":
        raise UserError(f"{path}: activation {hf['activation_function']!r}, expected 'gelu_new'")
    return hf


@torch.no_grad()
def load_hf_gpt2(model: GPT2, directory: str | Path) -> None:
    """Copy HF GPT-2 weights from ``directory`` (config.json + model.safetensors) into ``model``.

    The architecture in config.json must match ``model``. The vocabulary is resized to the
    model's: the first ``vocab_size`` rows of the text embedding are kept (the reference
    truncates GPT-2's 50257 rows), rows beyond the checkpoint keep their N(0, 0.02) init.
    Position rows beyond the model's ``max_seq_len`` are dropped. Accepts keys with or
    without the ``transformer.`` prefix (GPT2Model or GPT2LMHeadModel exports).
    """
    hf = read_hf_config(directory)
    cfg = model.cfg
    ours = {"n_layer": cfg.depth, "n_embd": cfg.width, "n_head": cfg.heads}
    for key, value in ours.items():
        if hf[key] != value:
            raise UserError(
                f"{Path(directory) / 'config.json'}: {key}={hf[key]} but the model has {value}"
            )
    path = Path(directory) / "model.safetensors"
    if not path.is_file():
        raise UserError(f"GPT-2 weights not found: {path} is missing; {HOW_TO_GET}")
    source = read_tensors(path)

    targets = dict(model.named_parameters())  # the tied lm_head.weight is not listed twice
    loaded: set[str] = set()
    for raw_key, tensor in source.items():
        if raw_key == _TIED or raw_key.endswith(_SKIPPED):
            continue
        key = raw_key if raw_key.startswith("transformer.") else f"transformer.{raw_key}"
        if key not in targets:
            raise UserError(f"{path}: unexpected key {raw_key!r} for a GPT-2 model")
        if key.endswith(_CONV1D):
            tensor = tensor.t()  # Conv1D (in, out) -> Linear (out, in)
        target = targets[key]
        if key in ("transformer.wte.weight", "transformer.wpe.weight"):
            rows = min(tensor.shape[0], target.shape[0])
            if key == "transformer.wpe.weight" and rows < target.shape[0]:
                raise UserError(
                    f"{path}: {tensor.shape[0]} positions, the model needs {target.shape[0]}"
                )
            tensor, target = tensor[:rows], target[:rows]
        if tensor.shape != target.shape:
            raise UserError(
                f"{path}: {raw_key!r} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(target.shape)}"
            )
        target.copy_(tensor)
        loaded.add(key)
    missing = sorted(set(targets) - loaded)
    if missing:
        raise UserError(
            f"{path}: missing weights {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
