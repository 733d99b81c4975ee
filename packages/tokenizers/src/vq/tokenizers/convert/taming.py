"""taming-transformers VQGAN checkpoints (e.g. ``vqgan_imagenet_f16_1024``, ``_16384``).

Their ``last.ckpt`` is a PyTorch Lightning checkpoint whose ``state_dict`` holds the
``VQModel``: ``encoder.*``, ``decoder.*``, ``quant_conv``, ``quantize.embedding``,
``post_quant_conv`` and the training loss ``loss.*`` (LPIPS network and discriminator).
Our VQGAN has the same modules under other names (see ``vq.tokenizers.autoencoders.vqgan``)::

    encoder.conv_in                       encoder.in_conv
    encoder.down.i.block.j.nin_shortcut   encoder.levels.i.blocks.j.shortcut   (norm1, conv1, ... as is)
    encoder.down.i.attn.j.{q,k,v,proj_out,norm}
                                          encoder.levels.i.attentions.j.{in_proj_*, out_proj, norm}
    encoder.down.i.downsample.conv        encoder.levels.i.resample.conv
    {encoder,decoder}.mid.{block_1,attn_1,block_2}
                                          {encoder,decoder}.mid.{block1,attention,block2}
    {encoder,decoder}.{norm_out,conv_out} {encoder,decoder}.{out_norm,out_conv}
    decoder.up.i.*                        decoder.levels.(n-1-i).*    taming numbers up levels
                                                                      by resolution, we by order
    quant_conv / post_quant_conv          post_encode.conv / pre_decode.conv
    quantize.embedding.weight             quantizer.codebook
    loss.discriminator.main.*             discriminator.safetensors: layers.*  (optional)
    loss.perceptual_loss.*, other loss.*  dropped

The perceptual network is never converted: our LPIPS reads its VGG16 and "lin" weights
from their own files (and holds no uninitialised normalisation buffers to fill in).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from vq.core.errors import UserError
from vq.core.tensorfiles import find_state_dict
from vq.tokenizers.api import Tokenizer
from vq.tokenizers.convert.common import (
    Conversion,
    Extra,
    Rule,
    Translated,
    fuse_attention,
    indices_under,
    pixel_tokenizer_config,
    rename,
)
from vq.tokenizers.discriminators.patchgan import PatchGANConfig, PatchGANDiscriminator
from vq.tokenizers.quantizers import VectorQuantizerConfig

NESTING = ("state_dict",)
RESAVE = "c['state_dict']"


_UP_PARTS = {"block": "blocks", "attn": "attentions", "upsample": "resample"}


def _rules(decoder_levels: int) -> list[Rule]:
    def up(match: re.Match[str]) -> str:
        level = decoder_levels - 1 - int(match[1])
        return f"decoder.levels.{level}.{_UP_PARTS[match[2]]}."

    return [
        Rule(r"(encoder|decoder)\.conv_in\.", r"\1.in_conv."),
        Rule(r"(encoder|decoder)\.norm_out\.", r"\1.out_norm."),
        Rule(r"(encoder|decoder)\.conv_out\.", r"\1.out_conv."),
        Rule(r"(encoder|decoder)\.mid\.block_1\.", r"\1.mid.block1."),
        Rule(r"(encoder|decoder)\.mid\.attn_1\.", r"\1.mid.attention."),
        Rule(r"(encoder|decoder)\.mid\.block_2\.", r"\1.mid.block2."),
        Rule(r"encoder\.down\.(\d+)\.block\.", r"encoder.levels.\1.blocks."),
        Rule(r"encoder\.down\.(\d+)\.attn\.", r"encoder.levels.\1.attentions."),
        Rule(r"encoder\.down\.(\d+)\.downsample\.", r"encoder.levels.\1.resample."),
        Rule(r"decoder\.up\.(\d+)\.(block|attn|upsample)\.", up),
        Rule(r"quant_conv\.", "post_encode.conv."),
        Rule(r"post_quant_conv\.", "pre_decode.conv."),
        Rule(r"quantize\.embedding\.weight$", "quantizer.codebook"),
        Rule(r"loss\.", None),  # LPIPS (loaded from its own files) and the discriminator
    ]


def _shortcuts(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k.replace(".nin_shortcut.", ".shortcut."): v for k, v in state.items()}


def _discriminator(state: dict[str, Tensor], source: str) -> Extra | None:
    """taming's ``NLayerDiscriminator`` (``loss.discriminator.main.*``) as our PatchGAN."""
    prefix = "loss.discriminator.main."
    weights = {"layers." + k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not weights:
        return None
    first = weights["layers.0.weight"]  # (width, in_channels, 4, 4)
    depth = sum(k.endswith(".running_mean") for k in weights)  # one BatchNorm per level
    config = PatchGANConfig(in_channels=first.shape[1], width=first.shape[0], depth=depth)
    expected = PatchGANDiscriminator(config).state_dict()
    if set(expected) != set(weights) or any(
        expected[k].shape != weights[k].shape for k in expected
    ):
        raise UserError(
            f"{source}: loss.discriminator is not a PatchGAN of width {config.width} and depth "
            f"{depth}; convert with discriminator:False to skip it"
        )
    return Extra(config, weights)


def translate(state: dict[str, Tensor], source: str) -> Translated:
    """taming's VQModel weights (a flat state dict) under our names, with their config."""
    decoder_levels = len(indices_under(state, r"decoder\.up\.(\d+)\."))
    renamed = rename(state, _rules(decoder_levels), source)
    ours = fuse_attention(_shortcuts(renamed.state))
    config = pixel_tokenizer_config(
        ours, lambda k, d: VectorQuantizerConfig.preset("vqgan", k, d), source
    )
    ours["quantizer.initialized"] = torch.tensor(True)  # the codebook is trained already
    return Translated(config, ours, renamed.dropped)


def convert(
    checkpoint: Any, *, source: str, image_size: int = 256, discriminator: bool = True
) -> Conversion:
    """A taming VQGAN checkpoint (Lightning dict or bare state dict) as a pixel tokenizer.

    Options: ``image_size`` the training resolution recorded in ``config.json`` (256 for the
    ImageNet models); ``discriminator`` also convert the PatchGAN when the checkpoint has it.
    """
    state = find_state_dict(checkpoint, NESTING, source)
    translated = translate(state, source)
    tokenizer = Tokenizer.from_state(
        "pixel_tokenizer", translated.config, translated.state, image_size=image_size, source=source
    )
    extras: dict[str, Extra] = {}
    if discriminator and (extra := _discriminator(state, source)) is not None:
        extras["discriminator"] = extra
    return Conversion(tokenizer, translated.dropped, extras)
