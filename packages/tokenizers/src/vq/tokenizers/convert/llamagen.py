"""LlamaGen VQ tokenizers (``vq_ds16_c2i.pt``, ``vq_ds8_c2i.pt``).

LlamaGen's ``VQModel`` (``tokenizer/tokenizer_image/vq_model.py`` in FoundationVision/
LlamaGen) is taming's VQGAN with other container names, a 16384 x 8 codebook whose codes
and inputs are l2-normalised before the (squared L2) search, and channel multipliers
``(1, 1, 2, 2, 4)`` (ds16) or ``(1, 2, 2, 4)`` (ds8), read in reverse by the decoder::

    {encoder,decoder}.conv_in / norm_out / conv_out      in_conv / out_norm / out_conv
    {encoder,decoder}.conv_blocks.i.res.j.nin_shortcut   levels.i.blocks.j.shortcut
    {encoder,decoder}.conv_blocks.i.attn.j.{q,k,v,proj_out,norm}
                                                         levels.i.attentions.j (fused)
    encoder.conv_blocks.i.downsample.conv                encoder.levels.i.resample.conv
    decoder.conv_blocks.i.upsample.conv                  decoder.levels.i.resample.conv
    {encoder,decoder}.mid.{0,1,2}                        mid.{block1,attention,block2}
    quant_conv / post_quant_conv                         post_encode.conv / pre_decode.conv
    quantize.embedding.weight                            quantizer.codebook
    quantize.codebook_used                               dropped (a usage history buffer)

Unlike taming, LlamaGen's decoder ``conv_blocks`` are numbered in the order they run
(lowest resolution first), which is our order: no index reversal. The key names were taken
from that source file; no released checkpoint could be opened here, so the assumptions
that a real file could break are checked when it is converted: unknown keys, missing
weights and wrong shapes are errors, and a checkpoint's ``model`` entry (or ``ema``) is
used when it is a training checkpoint.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from vq.core.tensorfiles import find_state_dict
from vq.tokenizers.api import Tokenizer
from vq.tokenizers.convert.common import (
    Conversion,
    Rule,
    Translated,
    fuse_attention,
    pixel_tokenizer_config,
    rename,
)
from vq.tokenizers.quantizers import VectorQuantizerConfig

RESAVE = "c['model']"

RULES = [
    Rule(r"(encoder|decoder)\.conv_in\.", r"\1.in_conv."),
    Rule(r"(encoder|decoder)\.norm_out\.", r"\1.out_norm."),
    Rule(r"(encoder|decoder)\.conv_out\.", r"\1.out_conv."),
    Rule(r"(encoder|decoder)\.mid\.0\.", r"\1.mid.block1."),
    Rule(r"(encoder|decoder)\.mid\.1\.", r"\1.mid.attention."),
    Rule(r"(encoder|decoder)\.mid\.2\.", r"\1.mid.block2."),
    Rule(r"(encoder|decoder)\.conv_blocks\.(\d+)\.res\.", r"\1.levels.\2.blocks."),
    Rule(r"(encoder|decoder)\.conv_blocks\.(\d+)\.attn\.", r"\1.levels.\2.attentions."),
    Rule(r"encoder\.conv_blocks\.(\d+)\.downsample\.", r"encoder.levels.\1.resample."),
    Rule(r"decoder\.conv_blocks\.(\d+)\.upsample\.", r"decoder.levels.\1.resample."),
    Rule(r"quant_conv\.", "post_encode.conv."),
    Rule(r"post_quant_conv\.", "pre_decode.conv."),
    Rule(r"quantize\.embedding\.weight$", "quantizer.codebook"),
    Rule(r"quantize\.codebook_used$", None),
]


def llamagen_quantizer(num_codes: int, dim: int) -> VectorQuantizerConfig:
    """LlamaGen's codebook: l2-normalised codes and inputs, L2 search, beta 0.25."""
    return VectorQuantizerConfig(num_codes=num_codes, dim=dim, distance="l2", normalize=True)


def convert(
    checkpoint: Any,
    *,
    source: str,
    image_size: int = 256,
    weights: Literal["model", "ema"] = "model",
) -> Conversion:
    """A LlamaGen VQ checkpoint (``{"model": ...}``, or a bare state dict) as a pixel tokenizer.

    Options: ``image_size`` recorded in ``config.json``; ``weights`` which entry of a training
    checkpoint to convert (``model``, or ``ema`` when it was trained with an EMA).
    """
    nesting = (weights,) if weights == "ema" else ("model", "state_dict")
    translated = translate(find_state_dict(checkpoint, nesting, source), source)
    tokenizer = Tokenizer.from_state(
        "pixel_tokenizer", translated.config, translated.state, image_size=image_size, source=source
    )
    return Conversion(tokenizer, translated.dropped)


def translate(state: dict[str, Tensor], source: str) -> Translated:
    """LlamaGen's VQModel weights (a flat state dict) under our names, with their config."""
    renamed = rename(state, RULES, source)
    ours = {k.replace(".nin_shortcut.", ".shortcut."): v for k, v in renamed.state.items()}
    ours = fuse_attention(ours)
    config = pixel_tokenizer_config(ours, llamagen_quantizer, source)
    ours["quantizer.initialized"] = torch.tensor(True)  # the codebook is trained already
    return Translated(config, ours, renamed.dropped)
