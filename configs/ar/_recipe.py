"""The reference's class-to-image AR recipe on ImageNet (configs/ar/README.md).

A GPT-2 (pretrained text weights) or LLaMA (from scratch) network models ``[class] + 16x16``
tokens of a frozen tokenizer run: 260k iterations of 96 images (global), weak augmentation
at 256 px, AdamW 1e-4 / betas (0.9, 0.98) / weight decay 0.2 / eps 1e-6, cosine to 0 without
warm-up. The ``cfg`` variants drop 10% of the labels to the null class and sample with
guidance 1.75; every variant samples with temperature 1.0, top-k 600, top-p 0.92.

Every file of this folder is ``c2i_recipe`` with its network bound, and takes the
reference's options for the frozen stages::

    --config-options ir_config::work_dirs/<tokenizer or decoder run>/<its config>.py \\
                     ir_state_dict::work_dirs/<that run>/checkpoints/latest \\
                     it_state_dict::work_dirs/<its tokenizer run>/checkpoints/latest  (decoder runs)

and the options every ImageNet config shares:

    lr            AdamW learning rate (1e-4)        batch_size  global batch (96)
    iters         iterations (260000)               image_size  square images (256)
    data_root     ImageNet folder (data/imagenet)   strategy    "ddp" or "fsdp" (one shard
    workers       loader processes per rank (5)                 unit per transformer block)

plus ``transformer_size`` (a preset of the architecture) and ``token_file`` (train on
tokens written ahead instead of tokenizing ImageNet each step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from vq.core.data import LoaderConfig
from vq.core.loop import LoopConfig
from vq.core.optim import OptimizationConfig, OptimizerConfig, ScheduleConfig
from vq.core.parallel import StrategyConfig
from vq.generators import ProposalNetworkConfig
from vq.train.data import ImageNetConfig, TokenFileConfig
from vq.train.trainers.ar import ARRunConfig, FrozenTokenizerConfig, SamplingConfig, fsdp_strategy

# The reference's sampling of every variant, and the guidance of the ``cfg`` variants.
GUIDANCE_SCALE = 1.75
LABEL_DROPOUT = 0.1
# Hugging Face repository names of the GPT-2 sizes, under pretrained/huggingface/.
GPT2_PRETRAINED = {"small": "gpt2", "medium": "gpt2-medium", "large": "gpt2-large", "xl": "gpt2-xl"}


def c2i_optimization(lr: float = 1e-4) -> OptimizationConfig:
    """AdamW, betas (0.9, 0.98), eps 1e-6, weight decay 0.2; cosine to 0, no warm-up."""
    return OptimizationConfig(
        optimizer=OptimizerConfig(
            kind="adamw", lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2
        ),
        schedule=ScheduleConfig(kind="cosine", min_lr=0.0),
    )


def c2i_loop(iters: int = 260_000) -> LoopConfig:
    """The reference's 260k iterations; logs every 50, samples every 500, saves every 10k."""
    return LoopConfig(iters=iters, log_interval=50, visual_interval=500, checkpoint_interval=10_000)


def c2i_recipe(
    transformer: Literal["gpt2", "llama"],
    guidance: bool,
    *,
    ir_config: str | None = None,
    ir_state_dict: str | None = None,
    it_state_dict: str | None = None,
    lr: float = 1e-4,
    batch_size: int = 96,
    iters: int = 260_000,
    image_size: int = 256,
    data_root: str = "data/imagenet",
    strategy: str = "ddp",
    workers: int = 5,
    transformer_size: str = "medium",
    token_file: str | None = None,
) -> ARRunConfig:
    tokenizer = FrozenTokenizerConfig.from_options("AR", ir_config, ir_state_dict, it_state_dict)
    pretrained = None
    if transformer == "gpt2" and transformer_size in GPT2_PRETRAINED:
        pretrained = Path("pretrained/huggingface") / GPT2_PRETRAINED[transformer_size]
    network = ProposalNetworkConfig(
        architecture=transformer,
        preset=transformer_size,
        null_class=guidance,
        label_dropout=LABEL_DROPOUT if guidance else 0.0,
        pretrained=pretrained,
    )
    images = ImageNetConfig(root=data_root, image_size=image_size, augmentation="weak")
    return ARRunConfig(
        network=network,
        tokenizer=tokenizer,
        data=TokenFileConfig(path=Path(token_file)) if token_file else images,
        num_classes=1000,
        sampling=SamplingConfig(
            guidance_scale=GUIDANCE_SCALE if guidance else 1.0,
            temperature=1.0,
            top_k=600,
            top_p=0.92,
        ),
        optimization=c2i_optimization(lr),
        loop=c2i_loop(iters),
        loader=LoaderConfig(batch_size=batch_size, batch_size_is_global=True, workers=workers),
        strategy=fsdp_strategy(network) if strategy == "fsdp" else StrategyConfig.option(strategy),
    )
