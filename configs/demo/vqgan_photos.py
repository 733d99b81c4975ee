"""A tiny VQGAN on the embedded photos: trains on CPU in about a minute, writes image grids.

An f4 tokenizer (the "tiny" preset, width 32) with 256 codes turns 32 px photos into 8 x 8
tokens; a PatchGAN of depth 2 joins for the last 50 of 400 iterations. Image grids (photos /
reconstructions) go to ``work_dirs/NAME/visuals/``.

The short-run choices were measured with ``uv run val`` on the 9 val crops (docs/performance.md,
"The VQGAN demo"): against 512 codes, strong augmentation, a constant LR and the GAN from
iteration 150, weak augmentation (the photos are crops already), a cosine LR, 256 codes and
the GAN for the last 50 iterations take PSNR from 16.1 to 18.0 dB and codebook usage from 10%
to 22% in the same wall time (the GAN costs PSNR early in a run this short). Since the commands
keep freed host memory (docs/training.md, "Host memory") an iteration costs about two thirds
of what it did, so the demo runs 400 iterations in the wall time of the former 300, for 18.6 dB.

LPIPS is off by default (``lpips:0.0``) so that the demo needs no downloaded weights: the
generator learns from L1, the codebook losses and the GAN term. ``--config-options lpips:1.0``
adds LPIPS with the VGG16 and lin weights of ``pretrained/lpips/`` (see
``vq.tokenizers.losses.lpips``). The learning rates are far above the ImageNet recipe's,
which would need many thousand iterations to show anything.

    uv run train demo/vqgan configs/demo/vqgan_photos.py
"""

from vq.core.data import LoaderConfig
from vq.core.loop import LoopConfig
from vq.core.optim import OptimizationConfig, OptimizerConfig, ScheduleConfig
from vq.tokenizers.discriminators import PatchGANConfig
from vq.tokenizers.losses import ReconstructionLossConfig
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizerConfig
from vq.tokenizers.quantizers import FSQConfig, VectorQuantizerConfig
from vq.train.data import PhotosConfig
from vq.train.gan_step import GANConfig
from vq.train.trainers.vqgan import VQGANRunConfig


def photos_run(
    quantizer: VectorQuantizerConfig | FSQConfig,
    *,
    connector_hidden: tuple[int, ...] = (),
    iters: int,
    image_size: int,
    batch_size: int,
    discriminator_start: int,
    lpips: float,
    lr: float,
    workers: int,
    augmentation: str = "strong",
    schedule: str = "constant",
) -> VQGANRunConfig:
    """The tiny GAN run around ``quantizer``, shared by the demo configs of this folder."""
    adam = OptimizerConfig(lr=lr, betas=(0.5, 0.9))
    generator_optimization = OptimizationConfig(
        optimizer=adam, schedule=ScheduleConfig(kind=schedule)
    )
    return VQGANRunConfig(
        model=PixelTokenizerConfig.from_preset("tiny", quantizer, connector_hidden),
        data=PhotosConfig(image_size=image_size, augmentation=augmentation),
        reconstruction=ReconstructionLossConfig(l1_weight=1.0, lpips_weight=lpips),
        gan=GANConfig(
            discriminator=PatchGANConfig(depth=2, width=32),
            discriminator_start=discriminator_start,
        ),
        optimization=generator_optimization,
        discriminator_optimization=OptimizationConfig(optimizer=adam),
        loop=LoopConfig(iters=iters, log_interval=25, visual_interval=100, checkpoint_interval=100),
        loader=LoaderConfig(batch_size=batch_size, workers=workers),
    )


def config(
    iters: int = 400,
    image_size: int = 32,
    batch_size: int = 16,
    num_codes: int = 256,
    code_dim: int = 8,
    discriminator_start: int = 350,
    lpips: float = 0.0,
    lr: float = 2e-3,
    workers: int = 0,
) -> VQGANRunConfig:
    return photos_run(
        VectorQuantizerConfig.preset("vqgan", num_codes, code_dim),
        iters=iters,
        image_size=image_size,
        batch_size=batch_size,
        discriminator_start=discriminator_start,
        lpips=lpips,
        lr=lr,
        workers=workers,
        augmentation="weak",
        schedule="cosine",
    )
