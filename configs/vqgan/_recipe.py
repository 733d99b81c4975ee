"""Taming-transformers' f16 VQGAN recipe on ImageNet (configs/vqgan/README.md), used by the
configs of ``configs/vqgan``, ``configs/cvqvae``, ``configs/fsq`` and ``configs/decoder/vqgan.py``.

The recipe: taming's f16 encoder/decoder (16x16 tokens at 256 px); L1 + LPIPS reconstruction
(weights 1 and 1); a hinge GAN from the first iteration whose generator term is scaled by
VQGAN's adaptive weight times a gain (0.8; 0.75 in the ``dd2_aglwg075`` variants, which also
use a PatchGAN of depth 2 instead of 3); Adam for both players with betas (0.5, 0.9), no
weight decay and a constant learning rate, 5.4e-5 for the generator and 4.32e-4 for the
discriminator; 260k iterations at a global batch of 96; ImageNet-1k with the "strong"
augmentation at 256 px, 5 loader workers per process.

A config file of those folders is ``vqgan_recipe`` (or ``fsq_recipe``) with its
architecture bound, so that every keyword after the ``/`` is one of its ``--config-options``::

    config = partial(vqgan_recipe, "vqgan", "patchgan_depth_2", 0.75, num_codes=8192)

    num_codes         codebook size K             code_dim    code width (256; not for FSQ)
    lr                generator LR (5.4e-5)       discriminator_lr  (4.32e-4)
    batch_size        global batch (96)           iters       iterations (260000)
    image_size        training images (256)       data_root   dataset folder (data/imagenet)
    strategy          "ddp" or "fsdp"             workers     loader processes per rank (5)

FSQ has no ``code_dim``: its ``num_codes`` picks one of the known level presets (8000,
64000), which imply the dimension. The ``_fsdp`` files bind ``strategy="fsdp"``.

``vqgan_recipe`` trains on ImageNet; ``vqgan_recipe_on`` is the same recipe on the dataset
config class its config binds first (the reference's LAION-Aesthetics, SA-Med2D-20M and
SATIN runs), where ``data_root`` defaults to that dataset's own folder::

    config = partial(vqgan_recipe_on, SATINConfig, "vqgan", "patchgan_depth_3", 0.8, num_codes=8192)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

from vq.core.data import LoaderConfig
from vq.core.errors import UserError
from vq.core.loop import LoopConfig
from vq.core.optim import OptimizationConfig, OptimizerConfig, ScheduleConfig
from vq.core.parallel import StrategyConfig
from vq.tokenizers.discriminators import (
    DiscriminatorConfig,
    PatchGANConfig,
    StyleGAN2DiscriminatorConfig,
)
from vq.tokenizers.losses import ReconstructionLossConfig
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizerConfig
from vq.tokenizers.quantizers import FSQConfig, VectorQuantizerConfig
from vq.tokenizers.quantizers.fsq import FSQ_LEVELS
from vq.train.data import (
    Augmentation,
    ImageNetConfig,
    LAIONAestheticsConfig,
    SAMed2DConfig,
    SATINConfig,
)
from vq.train.gan_step import GANConfig
from vq.train.trainers.vqgan import VQGANRunConfig

TAMING_BETAS = (0.5, 0.9)  # the reference's vqgan runner: both Adams
FSQ_CONNECTOR_HIDDEN = (256,)  # FSQ: 1x1 conv connectors 256 -> 256 -> levels and back
Discriminator = Literal["patchgan_depth_2", "patchgan_depth_3", "stylegan2"]
# The image sets of the reference's tokenizer runs (all but ImageNet are unlabelled).
ImageDataset = (
    type[ImageNetConfig] | type[LAIONAestheticsConfig] | type[SAMed2DConfig] | type[SATINConfig]
)


@dataclass(frozen=True)
class Training:
    """The options of a GAN config that are not its model (see the module docstring)."""

    lr: float
    discriminator_lr: float
    batch_size: int
    iters: int
    image_size: int
    data_root: str | None  # None: the dataset config's own folder (data/imagenet, ...)
    strategy: str
    workers: int
    dataset: ImageDataset = ImageNetConfig


def training_images(
    dataset: ImageDataset, data_root: str | None, image_size: int, augmentation: Augmentation
) -> ImageNetConfig | LAIONAestheticsConfig | SAMed2DConfig | SATINConfig:
    """``dataset`` under ``data_root`` (None: its default folder) with ``augmentation``
    ("strong" for the GAN recipes, "default" for VQ-KD; docs/data.md)."""
    root = {} if data_root is None else {"root": data_root}
    return dataset(**root, image_size=image_size, augmentation=augmentation)


def adam(lr: float, betas: tuple[float, float]) -> OptimizationConfig:
    """Adam at a constant learning rate without weight decay (every GAN recipe's)."""
    return OptimizationConfig(
        optimizer=OptimizerConfig(kind="adam", lr=lr, betas=betas, weight_decay=0.0),
        schedule=ScheduleConfig(kind="constant"),
    )


def gan_run(
    model: PixelTokenizerConfig,
    training: Training,
    *,
    reconstruction: ReconstructionLossConfig,
    gan: GANConfig,
    betas: tuple[float, float],
) -> VQGANRunConfig:
    """A GAN run of ``model`` on ``training.dataset``: what the taming and LlamaGen recipes
    share."""
    return VQGANRunConfig(
        model=model,
        data=training_images(training.dataset, training.data_root, training.image_size, "strong"),
        reconstruction=reconstruction,
        gan=gan,
        optimization=adam(training.lr, betas),
        discriminator_optimization=adam(training.discriminator_lr, betas),
        # our choices: logs every 50 iterations, image grids every 500, checkpoints every 10k
        loop=LoopConfig(
            iters=training.iters, log_interval=50, visual_interval=500, checkpoint_interval=10_000
        ),
        loader=LoaderConfig(
            batch_size=training.batch_size, batch_size_is_global=True, workers=training.workers
        ),
        strategy=StrategyConfig.option(training.strategy),
    )


def taming_run(
    quantizer: VectorQuantizerConfig | FSQConfig,
    training: Training,
    *,
    discriminator: Discriminator,
    gain: float,
    connector_hidden: tuple[int, ...] = (),
) -> VQGANRunConfig:
    """Taming's recipe around ``quantizer`` (module docstring)."""
    return gan_run(
        PixelTokenizerConfig.from_preset("f16", quantizer, connector_hidden),
        training,
        reconstruction=ReconstructionLossConfig(l1_weight=1.0, l2_weight=0.0, lpips_weight=1.0),
        gan=GANConfig(
            discriminator=discriminator_config(discriminator, training.image_size),
            loss="hinge",
            discriminator_start=0,  # the GAN from the first iteration
            generator_weight=1.0,
            discriminator_weight=1.0,
            adaptive_weight_gain=gain,
            r1_weight=0.0,
        ),
        betas=TAMING_BETAS,
    )


def discriminator_config(kind: Discriminator, image_size: int) -> DiscriminatorConfig:
    """Taming's PatchGAN (depth 3; ``dd2``: depth 2), or StyleGAN2's discriminator, which is
    built for one resolution: ``image_size``."""
    if kind == "stylegan2":
        return StyleGAN2DiscriminatorConfig(image_size=image_size)
    return PatchGANConfig(depth=2 if kind == "patchgan_depth_2" else 3)


def vector_quantizer(
    preset: Literal["vqgan", "cvqvae"], num_codes: int, code_dim: int
) -> VectorQuantizerConfig:
    """VQGAN's L2 codebook (uniform init, codebook loss + 0.25 commitment), or CVQ-VAE's
    with dead-code revival (running usage EMA 0.99). CVQ-VAE searches by the COSINE
    distance, as its paper and the reference's config intend; the reference silently
    resolved to L2 because the option was lost on its way through its config files."""
    if preset == "cvqvae":
        return VectorQuantizerConfig.preset("cvqvae", num_codes, code_dim, distance="cosine")
    return VectorQuantizerConfig.preset("vqgan", num_codes, code_dim)


def vqgan_recipe_on(
    dataset: ImageDataset,
    quantizer: Literal["vqgan", "cvqvae"],
    discriminator: Discriminator,
    gain: float,  # taming's adaptive weight gain 0.8; dd2_aglwg075: 0.75
    /,
    *,
    num_codes: int,
    code_dim: int = 256,  # the reference's configs/vqgan/model.py: embedding_dim 256
    lr: float = 5.4e-5,  # the reference's vqgan runner: generator Adam
    discriminator_lr: float = 4.32e-4,  # the same runner: discriminator Adam
    batch_size: int = 96,  # the reference's vqgan interface: 96 in total (global)
    iters: int = 260_000,  # the reference's vqgan runner
    image_size: int = 256,  # the reference's vqgan interface: 256 px, strong augmentation
    data_root: str | None = None,  # the dataset's folder: data/imagenet for ImageNet
    strategy: str = "ddp",
    workers: int = 5,  # the reference's vqgan interface: num_workers 5
) -> VQGANRunConfig:
    """Taming's VQGAN recipe with a ``num_codes x code_dim`` codebook (VQGAN or CVQ-VAE),
    trained on ``dataset``."""
    return taming_run(
        vector_quantizer(quantizer, num_codes, code_dim),
        Training(
            lr,
            discriminator_lr,
            batch_size,
            iters,
            image_size,
            data_root,
            strategy,
            workers,
            dataset,
        ),
        discriminator=discriminator,
        gain=gain,
    )


vqgan_recipe = partial(vqgan_recipe_on, ImageNetConfig)
"""Taming's VQGAN recipe on ImageNet-1k: every ``configs/vqgan/*_imagenet_*`` file."""


def fsq_quantizer(num_codes: int) -> FSQConfig:
    """FSQ with the reference's levels for ``num_codes`` (8000 or 64000)."""
    if num_codes not in FSQ_LEVELS:
        known = ", ".join(str(k) for k in sorted(FSQ_LEVELS))
        raise UserError(
            f"option num_codes {num_codes}: FSQ has level presets for {known} codes only "
            "(other levels: --override .model.quantizer.levels:[...])"
        )
    return FSQConfig(levels=list(FSQ_LEVELS[num_codes]))


def fsq_recipe(
    *,
    num_codes: int,
    lr: float = 5.4e-5,  # as vqgan_recipe: taming's optimizers, batch, iterations, data
    discriminator_lr: float = 4.32e-4,
    batch_size: int = 96,
    iters: int = 260_000,
    image_size: int = 256,
    data_root: str = "data/imagenet",
    strategy: str = "ddp",
    workers: int = 5,
) -> VQGANRunConfig:
    """Taming's recipe around FSQ (levels by ``num_codes``) behind 256-wide connectors, with
    PatchGAN depth 3 and adaptive weight gain 0.8 (not ``dd2``); no quantizer loss."""
    return taming_run(
        fsq_quantizer(num_codes),
        Training(lr, discriminator_lr, batch_size, iters, image_size, data_root, strategy, workers),
        discriminator="patchgan_depth_3",
        gain=0.8,
        connector_hidden=FSQ_CONNECTOR_HIDDEN,
    )
