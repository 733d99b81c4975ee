"""The reference Cluster recipe on ImageNet (configs/cluster/README.md), as plain functions.

"Directly transform image-understanding encoders into tokenizers": a frozen teacher's
unprojected patch features are the encoder and only a ``num_codes``-entry cosine codebook
is learned over them, with CVQ-VAE's dead-code revival synced over the global batch. Every
value below is the reference's Cluster run unless its comment says otherwise.

Every config of this folder is ``cluster_recipe`` with its teacher, codebook size and
teacher weights bound, so each keyword of ``cluster_recipe`` after ``teacher`` is one of its
``--config-options``::

    num_codes     codebook size K (8192)              lr          codebook Adam LR (5.4e-5)
    batch_size    global batch (256)                  iters       iterations (100000)
    image_size    images and teacher input (256)      data_root   ImageNet folder (data/imagenet)
    strategy      "ddp" or "fsdp"                     workers     loader processes per rank (10)
    teacher_weights  the teacher's file (it is the encoder: needed at every use)

There is no ``code_dim``: a code lives in the teacher's feature space, so its width is the
teacher's (``TEACHER_DIMS`` of vq.train.trainers.cluster, 768 for the ViT-B/16 teachers).
``image_size`` sets both the training images and the teacher's input resolution (the
reference runs both at 256 px), so a patch-16 teacher gives ``image_size / 16`` tokens a
side. ``teacher_weights:None`` keeps the teacher random (smoke runs only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from vq.core.data import LoaderConfig
from vq.core.loop import LoopConfig
from vq.core.optim import OptimizationConfig, OptimizerConfig, ScheduleConfig
from vq.core.parallel import StrategyConfig
from vq.tokenizers.models.cluster import ClusterConfig
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.tokenizers.teachers import TeacherConfig, TeacherName
from vq.train.data import ImageNetConfig
from vq.train.trainers.cluster import TEACHER_DIMS, ClusterRunConfig


def cluster_optimization(lr: float) -> OptimizationConfig:
    """Adam on the codebook alone with the VQGAN family's betas and a constant LR."""
    return OptimizationConfig(
        optimizer=OptimizerConfig(
            kind="adam",
            lr=lr,
            betas=(0.5, 0.9),  # taming VQGAN's
            weight_decay=0.0,
        ),
        schedule=ScheduleConfig(kind="constant", warmup_iters=0),
    )


def cluster_recipe(
    teacher: TeacherName,
    *,
    num_codes: int = 8192,
    lr: float = 5.4e-5,  # the reference's: taming VQGAN's base LR 4.5e-6 x 12
    batch_size: int = 256,  # global, over every rank
    iters: int = 100_000,
    image_size: int = 256,  # ImageNet with the 'strong' augmentation
    data_root: str = "data/imagenet",
    strategy: Literal["ddp", "fsdp"] = "ddp",
    workers: int = 10,
    teacher_weights: str | Path | None,
) -> ClusterRunConfig:
    """Cluster over ``teacher``'s features on ImageNet; the options are the module
    docstring's."""
    features = TeacherConfig(
        name=teacher, weights=teacher_weights, with_projection=False, image_size=image_size
    )
    return ClusterRunConfig(
        model=ClusterConfig(
            teacher=features,
            quantizer=VectorQuantizerConfig.preset("cluster", num_codes, TEACHER_DIMS[teacher]),
        ),
        data=ImageNetConfig(root=data_root, image_size=image_size, augmentation="strong"),
        optimization=cluster_optimization(lr),
        loop=LoopConfig(
            iters=iters,
            log_interval=50,  # our choices: logs, image grids and checkpoints
            visual_interval=500,
            checkpoint_interval=10_000,
        ),
        loader=LoaderConfig(batch_size=batch_size, batch_size_is_global=True, workers=workers),
        strategy=StrategyConfig.option(strategy),
    )
