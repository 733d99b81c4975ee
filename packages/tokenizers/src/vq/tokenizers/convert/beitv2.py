"""BEiT v2 VQ-KD tokenizers (``vqkd_encoder_base_decoder_1x768x12_{clip,dino}``).

BEiT v2's ``VQKD`` (``beit2/modeling_vqkd.py`` in microsoft/unilm) is an encoder ViT, a
``NormEMAVectorQuantizer`` and a one-block decoder ViT, with the task heads outside the ViTs
and the teacher inside the module. Its checkpoints (``{"model": state_dict}``) map onto our
``VQKDTokenizer`` as::

    encoder.{patch_embed,cls_token,pos_embed,blocks,fc_norm}.*   encoder.* (same names)
    encode_task_layer.*                                          encoder.task_layer.*
    quantize.embedding.weight                                    quantizer.codebook
    decoder.{patch_embed,cls_token,pos_embed,blocks,fc_norm}.*   decoder.*           (with_decoder)
    decode_task_layer.*                                          decoder.task_layer.* (with_decoder)
    quantize.cluster_size, quantize.embed_prob,
    quantize.embedding.{cluster_size,embed_avg,initted}          dropped (EMA statistics)
    teacher_model.*, scaling_layer.*, loss.*                     dropped

Without the decoder (``with_decoder=False``) its keys are dropped, never renamed to an empty
key, and the pretrained directory records the decoder as omitted: encoding needs only the
encoder and the codebook. Head counts are not stored in the weights; BEiT v2 uses 64-d heads
(``head_dim``). ``quantize.embedding.initted == 0`` means the codebook was never trained and
is an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from vq.core.errors import UserError
from vq.core.tensorfiles import find_state_dict
from vq.tokenizers.api import Tokenizer
from vq.tokenizers.convert.common import (
    Conversion,
    Rule,
    indices_under,
    rename,
    require,
)
from vq.tokenizers.models.vqkd import VQKDConfig
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.tokenizers.vit import ViTConfig

NESTING = ("model", "state_dict")
RESAVE = "c['model']"
_VIT_PARTS = r"(patch_embed|cls_token|pos_embed|blocks|fc_norm)"


def _rules(with_decoder: bool) -> list[Rule]:
    decoder: list[Rule] = (
        [
            Rule(rf"decoder\.{_VIT_PARTS}", r"decoder.\1"),
            Rule(r"decode_task_layer\.", "decoder.task_layer."),
        ]
        if with_decoder
        else [Rule(r"decoder\.", None), Rule(r"decode_task_layer\.", None)]
    )
    return [
        Rule(rf"encoder\.{_VIT_PARTS}", r"encoder.\1"),
        Rule(r"encode_task_layer\.", "encoder.task_layer."),
        Rule(r"quantize\.embedding\.weight$", "quantizer.codebook"),
        Rule(r"quantize\.embedding\.(cluster_size|embed_avg|initted)$", None),
        Rule(r"quantize\.(cluster_size|embed_prob)$", None),
        Rule(r"(teacher_model|scaling_layer|loss)\.", None),
        *decoder,
    ]


def vit_config(state: Mapping[str, Tensor], part: str, head_dim: int, source: str) -> ViTConfig:
    """The ``ViTConfig`` of our ``encoder``/``decoder`` weights in ``state``."""
    cls_token = require(state, f"{part}.cls_token", source)  # (1, 1, C)
    positions = require(state, f"{part}.pos_embed", source).shape[1] - 1  # grid * grid
    patch = require(state, f"{part}.patch_embed.proj.weight", source)  # (C, in, p, p)
    fc1 = require(state, f"{part}.blocks.0.mlp.fc1.weight", source)  # (C * ratio, C)
    out = require(state, f"{part}.task_layer.2.weight", source)  # (out_dim, C)
    dim, grid = cls_token.shape[-1], math.isqrt(positions)
    if grid * grid != positions or dim % head_dim:
        raise UserError(
            f"{source}: {part} has {positions} position embeddings (not a square grid) or "
            f"width {dim} not divisible by head_dim {head_dim}"
        )
    return ViTConfig(
        grid_size=grid,
        patch_size=patch.shape[-1],
        in_chans=patch.shape[1],
        embed_dim=dim,
        depth=len(indices_under(state, rf"{part}\.blocks\.(\d+)\.")),
        num_heads=dim // head_dim,
        mlp_ratio=fc1.shape[0] / dim,
        out_dim=out.shape[0],
    )


def convert(
    checkpoint: Any,
    *,
    source: str,
    with_decoder: bool = True,
    head_dim: int = 64,
    image_size: int | None = None,
) -> Conversion:
    """A BEiT v2 VQ-KD checkpoint as a ``vqkd`` tokenizer.

    Options: ``with_decoder`` keep the feature decoder (it predicts teacher features; encoding
    does not need it); ``head_dim`` attention head width (64 in BEiT v2); ``image_size`` the
    resolution recorded in ``config.json`` (default: the encoder's native grid x patch, 224).
    """
    state = find_state_dict(checkpoint, NESTING, source)
    initted = state.get("quantize.embedding.initted")
    if initted is not None and not bool(initted.flatten()[0]):
        raise UserError(
            f"{source}: the codebook was never initialised (quantize.embedding.initted = 0)"
        )
    if with_decoder and "decode_task_layer.2.weight" not in state:
        raise UserError(
            f"{source} has no decoder (no decode_task_layer); convert with with_decoder:False"
        )
    renamed = rename(state, _rules(with_decoder), source)
    ours = renamed.state
    num_codes, code_dim = require(ours, "quantizer.codebook", source).shape
    encoder = vit_config(ours, "encoder", head_dim, source)
    decoder = (
        vit_config(ours, "decoder", head_dim, source)
        if with_decoder
        # never built into weights: a placeholder with the shapes a decoder would read
        else ViTConfig.preset("vqkd_decoder", grid_size=encoder.grid_size, in_chans=code_dim)
    )
    try:
        config = VQKDConfig(
            encoder=encoder,
            quantizer=VectorQuantizerConfig.preset("vqkd", num_codes, code_dim),
            decoder=decoder,
        )
    except ValueError as error:
        raise UserError(f"{source}: the weights describe no valid VQ-KD: {error}") from None
    ours["quantizer.initialized"] = torch.tensor(True)  # the codebook is trained already
    tokenizer = Tokenizer.from_state(
        "vqkd",
        config,
        ours,
        image_size=image_size,
        omitted=() if with_decoder else ("decoder",),
        source=source,
    )
    return Conversion(tokenizer, renamed.dropped)
