"""Shared machinery of the checkpoint converters.

A converter turns the state dict of a public checkpoint into the state dict of one of our
models plus the model's config, which it infers from the tensor shapes (widths, depths,
codebook size), so one converter covers every size of a family. Renaming is a list of
regular-expression rules applied to each key: the first rule that matches wins; a rule
without a replacement drops the key on purpose (losses, teachers, statistics). A key that
no rule knows is an error, as is a model weight that no key provides: the result is
always checked by a strict load (``Tokenizer.from_state``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vq.core.config import Config
from vq.core.errors import UserError
from vq.tokenizers.api import Tokenizer
from vq.tokenizers.autoencoders.vqgan import VQGANDecoderConfig, VQGANEncoderConfig
from vq.tokenizers.connectors import ConnectorConfig
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizerConfig
from vq.tokenizers.quantizers import VectorQuantizerConfig

# taming-transformers and LlamaGen hard-code GroupNorm(32) in every normalisation layer.
TAMING_NORM_GROUPS = 32

Replacement = str | Callable[[re.Match[str]], str] | None


@dataclass(frozen=True)
class Rule:
    """Keys matching ``pattern`` (at their start) get the match replaced by ``replacement``;
    ``None`` drops them."""

    pattern: str
    replacement: Replacement

    def apply(self, key: str) -> tuple[bool, str | None]:
        match = re.match(self.pattern, key)
        if match is None:
            return False, None
        if self.replacement is None:
            return True, None
        if isinstance(self.replacement, str):
            return True, match.expand(self.replacement) + key[match.end() :]
        return True, self.replacement(match) + key[match.end() :]


@dataclass
class Extra:
    """A training-only part that came with the checkpoint (e.g. the discriminator), saved
    next to the tokenizer for fine-tuning: ``<name>.safetensors`` + ``<name>.json``."""

    config: Config
    state: dict[str, Tensor]


@dataclass
class Conversion:
    tokenizer: Tokenizer
    dropped: list[str]
    """Keys of the checkpoint left out on purpose (losses, teachers, statistics)."""
    extras: dict[str, Extra] = field(default_factory=dict)


@dataclass
class Translated:
    """A checkpoint's weights under our names and the config of the model they fit."""

    config: Config
    state: dict[str, Tensor]
    dropped: list[str]


@dataclass
class Renamed:
    state: dict[str, Tensor]
    dropped: list[str] = field(default_factory=list)


def rename(state: Mapping[str, Tensor], rules: Sequence[Rule], source: str) -> Renamed:
    """Apply ``rules`` to every key; unknown keys are a ``UserError`` naming them."""
    out = Renamed({})
    unknown: list[str] = []
    for key, value in state.items():
        for rule in rules:
            matched, new = rule.apply(key)
            if not matched:
                continue
            if new is None:
                out.dropped.append(key)
            elif new in out.state:
                raise UserError(f"{source}: two keys map to {new!r} (one is {key!r})")
            else:
                out.state[new] = value
            break
        else:
            unknown.append(key)
    if unknown:
        shown = ", ".join(unknown[:6]) + (
            f", ... ({len(unknown)} in all)" if len(unknown) > 6 else ""
        )
        raise UserError(
            f"{source}: keys this converter does not know: {shown}; is it the right converter "
            "for this checkpoint?"
        )
    return out


def fuse_attention(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Turn taming-style attention (1x1 convs ``q``, ``k``, ``v``, ``proj_out``) into the
    ``nn.MultiheadAttention`` layout of our ``AttentionBlock``: ``in_proj_weight`` (3C, C) is
    q, k, v stacked, ``in_proj_bias`` likewise, ``out_proj`` is ``proj_out``. The ``norm``
    stays. Every prefix with a ``q.weight`` is one attention block."""
    out = dict(state)
    prefixes = [k[: -len("q.weight")] for k in state if k.endswith(".q.weight")]
    for p in prefixes:
        try:
            weights = [out.pop(f"{p}{n}.weight") for n in ("q", "k", "v", "proj_out")]
            biases = [out.pop(f"{p}{n}.bias") for n in ("q", "k", "v", "proj_out")]
        except KeyError as error:
            raise UserError(f"attention block {p[:-1]!r} lacks {error.args[0]!r}") from None
        weights = [w.reshape(w.shape[0], w.shape[1]) for w in weights]  # (C, C, 1, 1) -> (C, C)
        out[f"{p}in_proj_weight"] = torch.cat(weights[:3], dim=0)  # (3C, C)
        out[f"{p}in_proj_bias"] = torch.cat(biases[:3], dim=0)  # (3C,)
        out[f"{p}out_proj.weight"] = weights[3]
        out[f"{p}out_proj.bias"] = biases[3]
    return out


def indices_under(state: Mapping[str, Any], pattern: str) -> list[int]:
    """The sorted distinct integers captured by ``pattern`` (one group) at the start of keys."""
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return sorted(found)


def require(state: Mapping[str, Tensor], key: str, source: str) -> Tensor:
    if key not in state:
        raise UserError(f"{source}: expected a tensor {key!r}; the checkpoint has none")
    return state[key]


def _autoencoder_fields(state: Mapping[str, Tensor], part: str, source: str) -> dict[str, Any]:
    """Widths, depth and attention of our ``encoder``/``decoder`` from its renamed weights."""
    levels = indices_under(state, rf"{part}\.levels\.(\d+)\.")
    if not levels or levels != list(range(len(levels))):
        raise UserError(f"{source}: cannot find the {part}'s levels (got {levels})")
    widths = [
        require(state, f"{part}.levels.{i}.blocks.0.conv1.weight", source).shape[0] for i in levels
    ]
    width = math.gcd(*widths)
    attention_level = levels[-1] if part == "encoder" else levels[0]
    in_conv = require(state, f"{part}.in_conv.weight", source)
    out_conv = require(state, f"{part}.out_conv.weight", source)
    return {
        "width": width,
        "width_mults": tuple(w // width for w in widths),
        "depth": len(indices_under(state, rf"{part}\.levels\.0\.blocks\.(\d+)\.")),
        "attention": f"{part}.levels.{attention_level}.attentions.0.in_proj_weight" in state,
        "mid_block": f"{part}.mid.block1.conv1.weight" in state,
        "norm_groups": TAMING_NORM_GROUPS,
        "in_channels": in_conv.shape[1],
        "out_channels": out_conv.shape[0],
    }


def pixel_tokenizer_config(
    state: Mapping[str, Tensor], quantizer: Callable[[int, int], VectorQuantizerConfig], source: str
) -> PixelTokenizerConfig:
    """The ``PixelTokenizerConfig`` whose state dict has the shapes of ``state`` (our names).

    ``quantizer(num_codes, dim)`` gives the family's codebook recipe. Sizes that our VQGAN
    cannot express (e.g. widths GroupNorm(32) does not divide) are a ``UserError``.
    """
    num_codes, dim = require(state, "quantizer.codebook", source).shape
    post = require(state, "post_encode.conv.weight", source)  # (D, C_z, 1, 1)
    pre = require(state, "pre_decode.conv.weight", source)  # (C_z, D, 1, 1)
    try:
        return PixelTokenizerConfig(
            encoder=VQGANEncoderConfig(**_autoencoder_fields(state, "encoder", source)),
            post_encode=ConnectorConfig(channels=(post.shape[1], post.shape[0])),
            quantizer=quantizer(num_codes, dim),
            pre_decode=ConnectorConfig(channels=(pre.shape[1], pre.shape[0])),
            decoder=VQGANDecoderConfig(**_autoencoder_fields(state, "decoder", source)),
        )
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        raise UserError(f"{source}: the weights describe no valid VQGAN: {error}") from None
