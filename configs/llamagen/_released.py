"""LlamaGen's released class-to-image GPTs (GPT-B / L / XL) as AR run configs of vq.

The weights come from ``uv run convert llamagen-gpt`` (our LLaMA with LlamaGen's 2D rotary
embedding, ``vq.generators.convert_llamagen``) and are passed to ``sample``/``test`` with
``--load-model-from``; these configs say what to build around them:

* the network: our preset of the size, ``rope="2d"`` over grids ``image_size / 16`` wide,
  1000 ImageNet classes + the null class;
* the frozen tokenizer: LlamaGen's ``vq_ds16_c2i`` converted by ``uv run convert llamagen``
  (``ir_state_dict``, default ``tokenizers/llamagen_ds16/model.safetensors``), rebuilt by
  the LlamaGen VQGAN run config (``ir_config``, default
  ``configs/llamagen/vqgan_imagenet_ddp.py``, whose model is exactly that architecture);
* sampling as LlamaGen's FID evaluation: guidance 2.0 (B, L) or 1.75 (XL), temperature 1,
  no top-k, no top-p;
* ImageNet at ``image_size`` for ``test`` (256 for the ``*_256.pt`` checkpoints, 384 for
  ``*_384.pt``: the grid must be the one the checkpoint was trained on, which the weights
  cannot tell).

Options: ``ir_config``, ``ir_state_dict``, ``image_size``, ``data_root`` (data/imagenet).
"""

from __future__ import annotations

from pathlib import Path

from configs.ar._recipe import c2i_loop, c2i_optimization
from vq.core.errors import UserError
from vq.generators import ProposalNetworkConfig
from vq.train.data import ImageNetConfig
from vq.train.trainers.ar import ARRunConfig, FrozenTokenizerConfig, SamplingConfig

DOWNSAMPLE = 16
"""Every released class-to-image GPT models the tokens of LlamaGen's ds16 VQGAN."""
GUIDANCE = {"B": 2.0, "L": 2.0, "XL": 1.75}
"""LlamaGen's classifier-free guidance scales for FID (GETTING_STARTED.md)."""
TOKENIZER_CONFIG = "configs/llamagen/vqgan_imagenet_ddp.py"
TOKENIZER_WEIGHTS = "tokenizers/llamagen_ds16/model.safetensors"


def released_recipe(
    size: str,
    *,
    image_size: int,
    ir_config: str = TOKENIZER_CONFIG,
    ir_state_dict: str = TOKENIZER_WEIGHTS,
    data_root: str = "data/imagenet",
) -> ARRunConfig:
    if image_size % DOWNSAMPLE:
        raise UserError(f"image_size {image_size} is not a multiple of {DOWNSAMPLE}")
    network = ProposalNetworkConfig(
        architecture="llama",
        preset=size,
        overrides={"rope": "2d", "grid_width": image_size // DOWNSAMPLE},
        null_class=True,
        label_dropout=0.1,  # LlamaGen's class_dropout_prob, should the weights be fine-tuned
    )
    return ARRunConfig(
        network=network,
        tokenizer=FrozenTokenizerConfig(config=Path(ir_config), state_dicts=[Path(ir_state_dict)]),
        data=ImageNetConfig(root=data_root, image_size=image_size, augmentation="weak"),
        num_classes=1000,
        sampling=SamplingConfig(
            guidance_scale=GUIDANCE[size], temperature=1.0, top_k=None, top_p=None
        ),
        # released weights are evaluated, not trained; should they be fine-tuned, it is with
        # the AR recipe's optimizer and length
        optimization=c2i_optimization(),
        loop=c2i_loop(),
    )
