"""The class-to-image NAR (MaskGIT) recipe on ImageNet (configs/nar/README.md).

A bidirectional MaskGIT network (``vq.generators.maskgit``; the AR sizes, default
``medium``: 24 x 1024, 16 heads) models the 16x16 tokens of a frozen tokenizer run, each
step predicting a cosine-schedule share of masked cells; samples are decoded in 12 steps
with choice temperature 4.5.

Optimisation is MaskGIT's published ImageNet 256 recipe (Chang et al., "MaskGIT: Masked
Generative Image Transformer", CVPR 2022, section 4.1, and the class-conditional config of
github.com/google-research/maskgit): AdamW lr 1e-4, betas (0.9, 0.96), weight decay 0.045,
dropout 0.1, batch 256, 300 epochs (1.28M images / 256 = 5005 iterations per epoch, so
1.5M iterations), label smoothing 0.1 on the masked cells. Cosine to 0 without warm-up as
in our AR recipe. One departure: the network is the LLaMA-block MaskGIT of
``vq.generators`` (RMSNorm, SwiGLU), not BERT blocks.
The ``cfg`` variants drop 10% of the labels to the null class and sample with guidance 1.75,
the AR recipe's values.

Every file of this folder is ``c2i_recipe`` with its guidance bound, and takes the options
of the AR configs (configs/ar/_recipe.py) for the frozen stages::

    --config-options ir_config::work_dirs/<tokenizer or decoder run>/<its config>.py \\
                     ir_state_dict::work_dirs/<that run>/checkpoints/latest \\
                     it_state_dict::work_dirs/<its tokenizer run>/checkpoints/latest  (decoder runs)

and the options every ImageNet config shares:

    lr            AdamW learning rate (1e-4)        batch_size  global batch (256)
    iters         iterations (1500000)              image_size  square images (256)
    data_root     ImageNet folder (data/imagenet)   strategy    "ddp" or "fsdp" (one shard
    workers       loader processes per rank (5)                 unit per transformer block)

plus ``transformer_size`` (a preset of ``vq.generators.maskgit.PRESETS``) and
``token_file`` (train on tokens written ahead instead of tokenizing ImageNet each step).
"""

from __future__ import annotations

from pathlib import Path

from vq.core.data import LoaderConfig
from vq.core.loop import LoopConfig
from vq.core.optim import OptimizationConfig, OptimizerConfig, ScheduleConfig
from vq.core.parallel import StrategyConfig
from vq.generators import MaskedNetworkConfig
from vq.train.data import ImageNetConfig, TokenFileConfig
from vq.train.proposal import FrozenTokenizerConfig
from vq.train.trainers.nar import MaskedSamplingConfig, NARRunConfig, masked_fsdp_strategy

# Guidance of the ``cfg`` variants (the AR recipe's).
GUIDANCE_SCALE = 1.75
LABEL_DROPOUT = 0.1
# MaskGIT's dropout of attention weights and residual branches.
DROPOUT = 0.1
# MaskGIT's decoding: 12 steps, Gumbel noise of scale 4.5 on the confidences.
NUM_STEPS = 12
CHOICE_TEMPERATURE = 4.5
# MaskGIT's label smoothing of the training loss.
LABEL_SMOOTHING = 0.1


def c2i_optimization(lr: float = 1e-4) -> OptimizationConfig:
    """MaskGIT's AdamW: betas (0.9, 0.96), weight decay 0.045; cosine to 0, no warm-up."""
    return OptimizationConfig(
        optimizer=OptimizerConfig(kind="adamw", lr=lr, betas=(0.9, 0.96), weight_decay=0.045),
        schedule=ScheduleConfig(kind="cosine", min_lr=0.0),
    )


def c2i_loop(iters: int = 1_500_000) -> LoopConfig:
    """300 epochs of 256 images; logs every 50, samples every 500, saves every 10k."""
    return LoopConfig(iters=iters, log_interval=50, visual_interval=500, checkpoint_interval=10_000)


def c2i_recipe(
    guidance: bool,
    *,
    ir_config: str | None = None,
    ir_state_dict: str | None = None,
    it_state_dict: str | None = None,
    lr: float = 1e-4,
    batch_size: int = 256,
    iters: int = 1_500_000,
    image_size: int = 256,
    data_root: str = "data/imagenet",
    strategy: str = "ddp",
    workers: int = 5,
    transformer_size: str = "medium",
    token_file: str | None = None,
) -> NARRunConfig:
    tokenizer = FrozenTokenizerConfig.from_options("NAR", ir_config, ir_state_dict, it_state_dict)
    network = MaskedNetworkConfig(
        preset=transformer_size,
        overrides={"dropout": DROPOUT},
        label_dropout=LABEL_DROPOUT if guidance else 0.0,
    )
    images = ImageNetConfig(root=data_root, image_size=image_size, augmentation="weak")
    return NARRunConfig(
        network=network,
        tokenizer=tokenizer,
        data=TokenFileConfig(path=Path(token_file)) if token_file else images,
        num_classes=1000,
        label_smoothing=LABEL_SMOOTHING,
        sampling=MaskedSamplingConfig(
            guidance_scale=GUIDANCE_SCALE if guidance else 1.0,
            temperature=1.0,
            top_k=None,
            top_p=None,
            num_steps=NUM_STEPS,
            choice_temperature=CHOICE_TEMPERATURE,
        ),
        optimization=c2i_optimization(lr),
        loop=c2i_loop(iters),
        loader=LoaderConfig(batch_size=batch_size, batch_size_is_global=True, workers=workers),
        strategy=(
            masked_fsdp_strategy(network) if strategy == "fsdp" else StrategyConfig.option(strategy)
        ),
    )
