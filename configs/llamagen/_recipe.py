"""LlamaGen's VQGAN recipe on ImageNet (configs/llamagen/README.md): the tokenizers of
``configs/llamagen/vqgan_*`` and the recipe of the paper's pixel decoders
(``configs/decoder/llamagen.py``).

The taming f16 autoencoder with a 16384 x 8 codebook of l2-normalised codes; L2 + LPIPS
reconstruction (weights 1 and 1); a hinge GAN from iteration 20k with fixed weights 0.5 for
both players and no adaptive weight; PatchGAN depth 3; Adam 1e-4 with betas (0.9, 0.95)
for both players at a constant learning rate; 400k iterations at a global batch of 128;
ImageNet with the "strong" augmentation at 256 px, 10 loader workers per process. Every
value below is the reference's ``configs/llamagen/vqgan.py`` unless its comment says
otherwise; the shared parts (optimizers, data, loop) are ``configs/vqgan/_recipe.py``'s.

``llamagen_variant`` takes the architecture of a variant first, which its config binds::

    config = partial(llamagen_variant, "f8", "patchgan_depth_3", "attention", num_codes=256)

    preset        "f16" (16x16 tokens at 256 px) or "f8" (one resampling less: 32x32)
    discriminator "patchgan_depth_3" (LlamaGen's) or "stylegan2" (built for image_size)
    layers        "attention" (taming's), or "no_attention": neither the self-attention of
                  the lowest-resolution level nor the Res-Attn-Res mid ("refine") block, in
                  the encoder and in the decoder (the reference's no_refine_layer ablation)

and ``llamagen_recipe`` is LlamaGen's own (f16, PatchGAN, attention). Every keyword after
the ``/`` is a ``--config-options`` of the config::

    num_codes    codebook size K (16384)         code_dim          code width (8)
    lr           generator LR (1e-4)             discriminator_lr  (1e-4)
    batch_size   global batch (128)              iters             iterations (400000)
    image_size   training images (256)           data_root         ImageNet folder (data/imagenet)
    strategy     "ddp" or "fsdp"                 workers           loader processes per rank (10)

``llamagen_c2i_recipe`` is the reference's class-to-image run on LlamaGen's terms (the
``c2i_medium_*`` files): the AR recipe of ``configs/ar/_recipe.py`` (LLaMA medium from
scratch, label dropout 0.1, guidance 1.75, weak augmentation, cosine to 0) with LlamaGen's
GPT training, AdamW betas (0.9, 0.95) and weight decay 0.05, 250k iterations at a global
batch of 256, 10 loader workers, and plain sampling: temperature 1, no top-k, no top-p.
The reference wrote those optimizer values under a key its trainer ignored, so its runs
kept the AR recipe's (0.9, 0.98) and 0.2; here they take effect, as intended.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

from configs.ar._recipe import GUIDANCE_SCALE, c2i_recipe
from configs.vqgan._recipe import Discriminator, Training, discriminator_config, gan_run
from vq.tokenizers.losses import ReconstructionLossConfig
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizerConfig
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.train.gan_step import GANConfig
from vq.train.trainers.ar import ARRunConfig, SamplingConfig
from vq.train.trainers.vqgan import VQGANRunConfig

LLAMAGEN_BETAS = (0.9, 0.95)  # both Adams; also the c2i GPT's AdamW
C2I_WEIGHT_DECAY = 0.05  # LlamaGen's GPT training
Layers = Literal["attention", "no_attention"]
WITHOUT_ATTENTION = {"attention": False, "mid_block": False}  # encoder and decoder fields


def llamagen_variant(
    preset: Literal["f16", "f8"],
    discriminator: Discriminator,
    layers: Layers,
    /,
    *,
    num_codes: int = 16384,
    code_dim: int = 8,
    lr: float = 1e-4,
    discriminator_lr: float = 1e-4,
    batch_size: int = 128,  # global
    iters: int = 400_000,
    image_size: int = 256,
    data_root: str | None = None,  # data/imagenet
    strategy: str = "ddp",
    workers: int = 10,
) -> VQGANRunConfig:
    """LlamaGen's VQGAN with a ``num_codes x code_dim`` codebook around the ``preset``
    autoencoder with ``layers``, judged by ``discriminator`` (module docstring)."""
    # l2-normalised codes and inputs: L2 search on the unit sphere, 0.25 commitment
    quantizer = VectorQuantizerConfig(num_codes=num_codes, dim=code_dim, normalize=True)
    autoencoder = WITHOUT_ATTENTION if layers == "no_attention" else {}
    return gan_run(
        PixelTokenizerConfig.from_preset(preset, quantizer, **autoencoder),
        Training(lr, discriminator_lr, batch_size, iters, image_size, data_root, strategy, workers),
        reconstruction=ReconstructionLossConfig(l1_weight=0.0, l2_weight=1.0, lpips_weight=1.0),
        gan=GANConfig(
            discriminator=discriminator_config(discriminator, image_size),
            loss="hinge",
            discriminator_start=20_000,
            generator_weight=0.5,
            discriminator_weight=0.5,
            adaptive_weight_gain=None,
            r1_weight=0.0,
        ),
        betas=LLAMAGEN_BETAS,
    )


llamagen_recipe = partial(llamagen_variant, "f16", "patchgan_depth_3", "attention")
"""LlamaGen's VQGAN itself: ``vqgan_imagenet_ddp.py`` and the paper's pixel decoders."""


def llamagen_c2i_recipe(
    *,
    ir_config: str | None = None,
    ir_state_dict: str | None = None,
    it_state_dict: str | None = None,
    lr: float = 1e-4,  # LlamaGen's GPT training (and the AR recipe's)
    batch_size: int = 256,  # global
    iters: int = 250_000,
    image_size: int = 256,
    data_root: str = "data/imagenet",
    strategy: str = "ddp",
    workers: int = 10,
    transformer_size: str = "medium",  # LlamaGen GPT-L: 24 x 1024, 16 heads
    token_file: str | None = None,
) -> ARRunConfig:
    """A guided LLaMA class-to-image run with LlamaGen's optimizer, batch and sampling on
    the frozen tokenizer ``ir_config`` (module docstring; options as ``c2i_recipe``'s)."""
    run = c2i_recipe(
        "llama",
        True,  # classifier-free guidance: the null class and label dropout 0.1
        ir_config=ir_config,
        ir_state_dict=ir_state_dict,
        it_state_dict=it_state_dict,
        lr=lr,
        batch_size=batch_size,
        iters=iters,
        image_size=image_size,
        data_root=data_root,
        strategy=strategy,
        workers=workers,
        transformer_size=transformer_size,
        token_file=token_file,
    )
    optimizer = run.optimization.optimizer.model_copy(
        update={"betas": LLAMAGEN_BETAS, "weight_decay": C2I_WEIGHT_DECAY}
    )
    return run.model_copy(
        update={
            "optimization": run.optimization.model_copy(update={"optimizer": optimizer}),
            # the reference's plain multinomial sampler under guidance
            "sampling": SamplingConfig(
                guidance_scale=GUIDANCE_SCALE, temperature=1.0, top_k=None, top_p=None
            ),
        }
    )
