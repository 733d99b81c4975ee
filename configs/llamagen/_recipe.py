"""LlamaGen's VQGAN recipe on ImageNet (configs/llamagen/README.md): the tokenizer of
``configs/llamagen/vqgan_imagenet_ddp.py`` and the recipe of the paper's pixel decoders
(``configs/decoder/llamagen.py``).

The taming f16 autoencoder with a 16384 x 8 codebook of l2-normalised codes; L2 + LPIPS
reconstruction (weights 1 and 1); a hinge GAN from iteration 20k with fixed weights 0.5 for
both players and no adaptive weight; PatchGAN depth 3; Adam 1e-4 with betas (0.9, 0.95)
for both players at a constant learning rate; 400k iterations at a global batch of 128;
ImageNet with the "strong" augmentation at 256 px, 10 loader workers per process. Every
value below is the reference's ``configs/llamagen/vqgan.py`` unless its comment says
otherwise; the shared parts (optimizers, data, loop) are ``configs/vqgan/_recipe.py``'s.

Every keyword of ``llamagen_recipe`` is a ``--config-options`` of the config::

    num_codes    codebook size K (16384)         code_dim          code width (8)
    lr           generator LR (1e-4)             discriminator_lr  (1e-4)
    batch_size   global batch (128)              iters             iterations (400000)
    image_size   training images (256)           data_root         ImageNet folder
    strategy     "ddp" or "fsdp"                 workers           loader processes per rank (10)

The reference's variants are options: 384 px (``image_size:384``), K = 128 (``num_codes:128``).
"""

from __future__ import annotations

from configs.vqgan._recipe import Training, gan_run
from vq.tokenizers.discriminators import PatchGANConfig
from vq.tokenizers.losses import ReconstructionLossConfig
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizerConfig
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.train.gan_step import GANConfig
from vq.train.trainers.vqgan import VQGANRunConfig

LLAMAGEN_BETAS = (0.9, 0.95)  # both Adams


def llamagen_recipe(
    *,
    num_codes: int = 16384,
    code_dim: int = 8,
    lr: float = 1e-4,
    discriminator_lr: float = 1e-4,
    batch_size: int = 128,  # global
    iters: int = 400_000,
    image_size: int = 256,
    data_root: str = "data/imagenet",
    strategy: str = "ddp",
    workers: int = 10,
) -> VQGANRunConfig:
    """LlamaGen's VQGAN with a ``num_codes x code_dim`` codebook (module docstring)."""
    # l2-normalised codes and inputs: L2 search on the unit sphere, 0.25 commitment
    quantizer = VectorQuantizerConfig(num_codes=num_codes, dim=code_dim, normalize=True)
    return gan_run(
        PixelTokenizerConfig.from_preset("f16", quantizer),
        Training(lr, discriminator_lr, batch_size, iters, image_size, data_root, strategy, workers),
        reconstruction=ReconstructionLossConfig(l1_weight=0.0, l2_weight=1.0, lpips_weight=1.0),
        gan=GANConfig(
            discriminator=PatchGANConfig(depth=3),
            loss="hinge",
            discriminator_start=20_000,
            generator_weight=0.5,
            discriminator_weight=0.5,
            adaptive_weight_gain=None,
            r1_weight=0.0,
        ),
        betas=LLAMAGEN_BETAS,
    )
