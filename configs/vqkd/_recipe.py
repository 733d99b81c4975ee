"""The reference VQ-KD recipe on ImageNet (configs/vqkd/README.md), as plain functions.

VQ-KD is BEiT v2's tokenizer: a ViT-B/16 encoder, a ``num_codes x code_dim`` cosine
codebook (k-means init, EMA 0.99) and a one-block ViT decoder that predicts a frozen
teacher's features. "Image Understanding Makes for A Good Tokenizer for Image Generation"
trains it with BEiT v2's optimisation: every value below is theirs unless its comment says
otherwise.

Every config of this folder is ``vqkd_recipe`` with its teacher, codebook size and
teacher weights bound, so each keyword of ``vqkd_recipe`` after ``teacher`` is one of its
``--config-options``::

    num_codes     codebook size K (8192)              code_dim    code width (32)
    lr            peak AdamW LR (2e-4)                batch_size  global batch (512)
    iters         iterations (250000)                 image_size  training images (224)
    data_root     dataset folder (data/imagenet)      strategy    "ddp" or "fsdp"
    workers       loader processes per rank (10)      teacher_weights  the teacher's file

``image_size`` sets the training images only: the encoder keeps its native 14x14 position
embeddings and interpolates them (256 px gives 16x16 tokens), and the teacher runs at its
own resolution, its features resized to the token grid. ``teacher_weights:None`` keeps the
teacher random (smoke runs only).

``vqkd_recipe`` trains on ImageNet; ``vqkd_recipe_on`` is the same recipe on the dataset
config class its config binds first (the reference's LAION-Aesthetics, SA-Med2D-20M and
SATIN runs), where ``data_root`` defaults to that dataset's own folder.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Literal

from configs.vqgan._recipe import ImageDataset, training_images
from vq.core.data import LoaderConfig
from vq.core.loop import LoopConfig
from vq.core.optim import OptimizationConfig, OptimizerConfig, ScheduleConfig
from vq.core.parallel import StrategyConfig
from vq.tokenizers.models.vqkd import VQKDConfig
from vq.tokenizers.teachers import TeacherConfig, TeacherName
from vq.train.data import ImageNetConfig
from vq.train.trainers.vqkd import TEACHER_DIMS, VQKDRunConfig


def vqkd_optimization(
    lr: float, *, warmup_iters: int = 25_000, min_lr: float = 1e-5
) -> OptimizationConfig:
    """BEiT v2's AdamW and schedule: linear warm-up from ``1e-8 * lr`` over ``warmup_iters``,
    then a cosine to ``min_lr`` at the end of the run (25k + 225k iterations)."""
    return OptimizationConfig(
        optimizer=OptimizerConfig(
            kind="adamw",
            lr=lr,
            betas=(0.9, 0.99),  # BEiT v2's VQ-KD (not AdamW's default 0.999)
            eps=1e-8,
            weight_decay=1e-4,  # on weight matrices only (vq.tokenizers.optim_groups)
        ),
        schedule=ScheduleConfig(
            kind="cosine", warmup_iters=warmup_iters, warmup_start_factor=1e-8, min_lr=min_lr
        ),
    )


def vqkd_recipe_on(
    dataset: ImageDataset,
    teacher: TeacherName,
    /,
    *,
    num_codes: int = 8192,  # the paper's main tokenizer (vit_16384_imagenet_ddp.py binds 16384)
    code_dim: int = 32,  # BEiT v2's code width
    lr: float = 2e-4,  # peak, reached after the warm-up
    batch_size: int = 512,  # global, over every rank
    iters: int = 250_000,  # 25k warm-up + 225k cosine
    image_size: int = 224,  # ImageNet with the 'default' augmentation (RandomResizedCrop)
    data_root: str | None = None,  # the dataset's folder: data/imagenet for ImageNet
    strategy: Literal["ddp", "fsdp"] = "ddp",
    workers: int = 10,
    teacher_weights: str | Path | None,
) -> VQKDRunConfig:
    """VQ-KD distilling ``teacher`` on ``dataset``; the options are the module docstring's."""
    return VQKDRunConfig(
        model=VQKDConfig.preset(TEACHER_DIMS[teacher], num_codes=num_codes, code_dim=code_dim),
        teacher=TeacherConfig(name=teacher, weights=teacher_weights),
        data=training_images(dataset, data_root, image_size, "default"),
        optimization=vqkd_optimization(lr),
        loop=LoopConfig(
            iters=iters,
            log_interval=50,  # our choices: logs, image grids and checkpoints
            visual_interval=500,
            checkpoint_interval=10_000,
        ),
        loader=LoaderConfig(batch_size=batch_size, batch_size_is_global=True, workers=workers),
        strategy=StrategyConfig.option(strategy),
    )


vqkd_recipe = partial(vqkd_recipe_on, ImageNetConfig)
"""The VQ-KD recipe on ImageNet-1k: every ``configs/vqkd/*_imagenet_*`` file."""
