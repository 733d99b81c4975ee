"""LlamaGen's released class-to-image GPTs (``c2i_B_256.pt``, ``c2i_L_384.pt``, ...) as our
LLaMA proposal network with ``rope="2d"``.

LlamaGen's ``Transformer`` (``autoregressive/models/gpt.py`` in FoundationVision/LlamaGen)
is a LLaMA over ``[class] + h*w`` tokens with its class embedding apart from the token
embedding; we hold both in one vocabulary (``vq.generators.sequence``)::

    cls_embedding.embedding_table (N [+1], C)   embed_tokens rows [0, N [+1])
    tok_embeddings (K, C)                       embed_tokens rows [N [+1], N [+1] + K)
    output (K, C)                               lm_head rows of the image tokens; the class
                                                rows are zero (never a valid next token)
    layers.i.attention.wqkv (3C, C)             self_attn.{q,k,v}_proj (q, k permuted, below)
    layers.i.attention.wo                       self_attn.o_proj
    layers.i.feed_forward.w1 / w3 / w2          mlp.gate_proj / up_proj / down_proj
    layers.i.attention_norm / ffn_norm          input_layernorm / post_attention_layernorm
    norm                                        norm

The null class of classifier-free guidance is LlamaGen's row N, which is our null id N as
well. LlamaGen rotates adjacent query/key dimensions (2i, 2i + 1); our rotary embedding
rotates (i, i + D/2), so the rows of each head's query and key projections are reordered
``[0, 2, 4, ..., 1, 3, 5, ...]`` (``vq.generators.rope``). Nothing else differs: RMSNorm eps
1e-5, rotary base 10000, no biases, SwiGLU width from ``ffn_hidden_size``.

Only the heads cannot be read from the shapes; they come from LlamaGen's size table
(``SIZES``), or the ``heads`` option for other sizes. The rotary tables depend on the grid,
not on the weights, and are not stored: the AR config that samples the model sets
``grid_width`` (``configs/llamagen/c2i_*_released.py``). Every key is accounted for: weights
are mapped, LlamaGen's derived buffers (``freqs_cis``, ``causal_mask``, KV caches) dropped,
anything else is an error, as are missing weights and wrong shapes.

Output directory: ``model.safetensors`` (our state dict, loaded by ``sample``/``test``
``--load-model-from``) and ``config.json`` (format ``vq-generator``: what the weights are).
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file
from torch import Tensor

from vq.core.errors import UserError, few
from vq.core.tensorfiles import find_state_dict, read_public_checkpoint
from vq.generators.config import ProposalNetworkConfig
from vq.generators.llama import PRESETS, LlamaConfig, ffn_hidden_size

KIND = "llamagen-gpt"
FORMAT, VERSION = "vq-generator", "1"
RESAVE = "c['model']"
"""What to re-save when a weights-only load refuses a checkpoint (it pickles ``args``)."""

# LlamaGen's class-to-image sizes: (depth, width) -> (name, heads).
SIZES: dict[tuple[int, int], tuple[str, int]] = {
    (12, 768): ("B", 12),
    (24, 1024): ("L", 16),
    (36, 1280): ("XL", 20),
    (48, 1536): ("XXL", 24),
    (48, 2560): ("XXXL", 40),
    (24, 3200): ("3B", 32),
}
# Derived buffers that some exports carry: recomputed by our network, never weights.
DROPPED = re.compile(r"^(freqs_cis|causal_mask|layers\.\d+\.attention\.kv_cache\.[kv]_cache)$")
# Wrappers' prefixes (DDP, torch.compile) stripped when every key has them.
PREFIXES = ("module.", "_orig_mod.")


@dataclass
class GPTConversion:
    """A LlamaGen GPT under our names, and the network it fits."""

    source: str
    size: str  # "B", "L", "XL", ... or "custom"
    llama: LlamaConfig  # of the weights; rope/grid_width are set by the sampling config
    num_classes: int
    null_class: bool
    codebook_size: int
    state: dict[str, Tensor]
    dropped: list[str] = field(default_factory=list)

    def network(self, grid_width: int, label_dropout: float = 0.1) -> ProposalNetworkConfig:
        """The ``ProposalNetworkConfig`` that rebuilds this network for grids ``grid_width``
        wide (our preset of the size when there is one, else explicit depth/width/heads)."""
        c = self.llama
        overrides: dict[str, int | float | str] = {"rope": "2d", "grid_width": grid_width}
        preset = self.size if self.size in PRESETS else "B"
        if PRESETS.get(self.size) != {"depth": c.depth, "width": c.width, "heads": c.heads}:
            overrides |= {"depth": c.depth, "width": c.width, "heads": c.heads}
        if c.ffn_hidden != ffn_hidden_size(c.width):
            overrides["ffn_hidden"] = c.ffn_hidden  # type: ignore[assignment]
        return ProposalNetworkConfig(
            architecture="llama",
            preset=preset,
            overrides=overrides,
            null_class=self.null_class,
            label_dropout=label_dropout if self.null_class else 0.0,
        )

    def describe(self) -> str:
        c = self.llama
        null = " + null" if self.null_class else ""
        return (
            f"LlamaGen GPT-{self.size} ({c.depth} x {c.width}, {c.heads} heads; "
            f"{self.num_classes} classes{null}, {self.codebook_size} codes)"
        )

    def save(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state.items()}
        save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": FORMAT})
        config = {
            "format": FORMAT,
            "version": VERSION,
            "converted_from": KIND,
            "source": self.source,
            "size": self.size,
            "architecture": "llama",
            "llama": {
                k: v for k, v in asdict(self.llama).items() if k not in ("rope", "grid_width")
            },
            "rope": "2d (grid_width set by the sampling config)",
            "num_classes": self.num_classes,
            "null_class": self.null_class,
            "codebook_size": self.codebook_size,
            "dropped": self.dropped,
        }
        (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


# ------------------------------------------------------------------ conversion ------


def converter_options() -> dict[str, inspect.Parameter]:
    """The keyword options of ``convert`` (besides ``source``), for the CLI."""
    parameters = inspect.signature(convert).parameters
    return {k: p for k, p in parameters.items() if p.kind is p.KEYWORD_ONLY and k != "source"}


def convert_checkpoint(
    path: Path, out_dir: Path | None = None, options: dict[str, Any] | None = None
) -> GPTConversion:
    """Read LlamaGen's GPT checkpoint at ``path`` (weights only), convert it with
    ``options`` (see ``convert``) and, given ``out_dir``, write it there."""
    options = dict(options or {})
    accepted = converter_options()
    for key in options:
        if key not in accepted:
            listed = ", ".join(f"{k} (default {p.default!r})" for k, p in accepted.items())
            raise UserError(f"converter {KIND!r} takes no option {key!r}; it accepts: {listed}")
    checkpoint = read_public_checkpoint(Path(path), KIND, RESAVE)
    conversion = convert(checkpoint, source=str(path), **options)
    if out_dir is not None:
        conversion.save(Path(out_dir))
    return conversion


def convert(
    checkpoint: Any,
    *,
    source: str,
    num_classes: int = 1000,
    heads: int | None = None,
    weights: Literal["model", "ema"] = "model",
) -> GPTConversion:
    """A LlamaGen c2i GPT checkpoint (``{"model": ...}``, ``{"module": ...}``, ``{"ema":
    ...}`` or a bare FSDP state dict) as our LLaMA.

    Options: ``num_classes`` of the class embedding (its rows are ``num_classes``, plus one
    for the null class when trained with label dropout); ``heads`` for a size outside
    ``SIZES``; ``weights`` which entry of a training checkpoint (``model`` or ``ema``).
    """
    if weights not in ("model", "ema"):
        raise UserError(f"{source}: weights must be 'model' or 'ema', got {weights!r}")
    if weights == "ema" and not (isinstance(checkpoint, dict) and "ema" in checkpoint):
        raise UserError(f"{source}: weights 'ema' asked for, but the checkpoint has no 'ema'")
    nesting = ("ema",) if weights == "ema" else ("model", "module", "state_dict")
    state = _strip_prefixes(find_state_dict(checkpoint, nesting, source))
    if any(k.startswith("cls_embedding.cap_proj.") for k in state):
        raise UserError(f"{source} is a text-to-image LlamaGen GPT; only class-to-image converts")
    dims = _dimensions(state, source, num_classes, heads)
    expected = _expected_shapes(dims)
    dropped = sorted(k for k in state if DROPPED.match(k))
    unknown = sorted(k for k in state if k not in expected and not DROPPED.match(k))
    if unknown:
        raise UserError(
            f"{source}: keys that are not part of a LlamaGen class-to-image GPT: "
            f"{few(unknown)}; is it the right converter for this checkpoint?"
        )
    missing = sorted(k for k in expected if k not in state)
    if missing:
        raise UserError(f"{source}: the checkpoint lacks {few(missing)}")
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {shape})"
        for k, shape in expected.items()
        if tuple(state[k].shape) != shape
    ]
    if wrong:
        raise UserError(f"{source}: tensors of unexpected shape: {few(wrong)}")

    # Every key and shape is checked above; that the result fits ``Llama(llama)`` exactly is
    # the converter's own invariant, tested (a meta build here would cost seconds).
    ours = _translate(state, dims)
    return GPTConversion(
        source=source,
        size=dims.size,
        llama=dims.llama,
        num_classes=num_classes,
        null_class=dims.null_class,
        codebook_size=dims.codebook_size,
        state=ours,
        dropped=dropped,
    )


@dataclass(frozen=True)
class _Dims:
    size: str
    llama: LlamaConfig
    class_rows: int  # num_classes (+1 with the null class)
    null_class: bool
    codebook_size: int


def _dimensions(
    state: dict[str, Tensor], source: str, num_classes: int, heads: int | None
) -> _Dims:
    """Sizes of the network from the shapes (heads from ``SIZES`` or the option)."""
    tok = _require(state, "tok_embeddings.weight", source)  # (K, C)
    cls = _require(state, "cls_embedding.embedding_table.weight", source)  # (N [+1], C)
    hidden = _require(state, "layers.0.feed_forward.w1.weight", source).shape[0]
    qkv = _require(state, "layers.0.attention.wqkv.weight", source)  # (3C, C) without GQA
    codebook_size, width = tok.shape
    layers = sorted({int(m[1]) for k in state if (m := re.match(r"layers\.(\d+)\.", k))})
    if layers != list(range(len(layers))):
        raise UserError(f"{source}: transformer layers are not numbered 0..L-1 (got {layers})")
    if qkv.shape[0] != 3 * width:
        raise UserError(
            f"{source}: attention.wqkv has {qkv.shape[0]} rows, not 3 x {width}: grouped-query "
            "attention (n_kv_head < n_head) has no counterpart in our LLaMA"
        )
    if cls.shape[0] not in (num_classes, num_classes + 1):
        raise UserError(
            f"{source}: the class embedding has {cls.shape[0]} rows; {num_classes} classes "
            f"need {num_classes} (no guidance) or {num_classes + 1} (with the null class): "
            "pass --options num_classes:N"
        )
    size, known_heads = SIZES.get((len(layers), width), ("custom", None))
    heads = heads or known_heads
    if heads is None:
        raise UserError(
            f"{source}: {len(layers)} layers of width {width} is no LlamaGen size "
            f"({', '.join(n for n, _ in SIZES.values())}); pass --options heads:N"
        )
    try:
        llama = LlamaConfig(
            vocab_size=cls.shape[0] + codebook_size,
            depth=len(layers),
            width=width,
            heads=heads,
            ffn_hidden=hidden,
            rope="2d",
            grid_width=1,  # placeholder: the tables are rebuilt for the sampling grid
        )
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None
    return _Dims(size, llama, cls.shape[0], cls.shape[0] == num_classes + 1, codebook_size)


def _expected_shapes(dims: _Dims) -> dict[str, tuple[int, ...]]:
    """Every LlamaGen key of a c2i GPT of ``dims`` and its shape."""
    c = dims.llama
    C, H = c.width, c.ffn_hidden
    assert H is not None
    shapes = {
        "tok_embeddings.weight": (dims.codebook_size, C),
        "cls_embedding.embedding_table.weight": (dims.class_rows, C),
        "norm.weight": (C,),
        "output.weight": (dims.codebook_size, C),
    }
    for i in range(c.depth):
        p = f"layers.{i}."
        shapes |= {
            p + "attention_norm.weight": (C,),
            p + "attention.wqkv.weight": (3 * C, C),
            p + "attention.wo.weight": (C, C),
            p + "ffn_norm.weight": (C,),
            p + "feed_forward.w1.weight": (H, C),
            p + "feed_forward.w3.weight": (H, C),
            p + "feed_forward.w2.weight": (C, H),
        }
    return shapes


def interleaved_to_halves(weight: Tensor, heads: int) -> Tensor:
    """Reorder the output rows (heads * D, C_in) of a query/key projection so that each
    head's adjacent pairs (2i, 2i + 1) become the pairs (i, i + D/2) of rotate-half."""
    rows, cols = weight.shape
    d = rows // heads
    return weight.view(heads, d // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def _translate(state: dict[str, Tensor], dims: _Dims) -> dict[str, Tensor]:
    c = dims.llama
    tok, cls = state["tok_embeddings.weight"], state["cls_embedding.embedding_table.weight"]
    output = state["output.weight"]  # (K, C)
    ours = {
        "embed_tokens.weight": torch.cat((cls, tok)),  # (N [+1] + K, C)
        "lm_head.weight": torch.cat((output.new_zeros(cls.shape), output)),  # (N [+1] + K, C)
        "norm.weight": state["norm.weight"],
    }
    for i in range(c.depth):
        p = f"layers.{i}."  # the same prefix in both layouts
        wq, wk, wv = state[p + "attention.wqkv.weight"].split(c.width)  # 3 x (C, C)
        ours |= {
            p + "input_layernorm.weight": state[p + "attention_norm.weight"],
            p + "self_attn.q_proj.weight": interleaved_to_halves(wq, c.heads),
            p + "self_attn.k_proj.weight": interleaved_to_halves(wk, c.heads),
            p + "self_attn.v_proj.weight": wv,
            p + "self_attn.o_proj.weight": state[p + "attention.wo.weight"],
            p + "post_attention_layernorm.weight": state[p + "ffn_norm.weight"],
            p + "mlp.gate_proj.weight": state[p + "feed_forward.w1.weight"],
            p + "mlp.up_proj.weight": state[p + "feed_forward.w3.weight"],
            p + "mlp.down_proj.weight": state[p + "feed_forward.w2.weight"],
        }
    return {k: v.contiguous() for k, v in ours.items()}


def _strip_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _require(state: dict[str, Tensor], key: str, source: str) -> Tensor:
    if key not in state:
        raise UserError(
            f"{source}: expected a tensor {key!r}; the checkpoint has none (is it a LlamaGen "
            "class-to-image GPT?)"
        )
    return state[key]
