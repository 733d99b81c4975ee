"""Classification probes of frozen tokenizers on ImageNet (configs/probe/README.md).

A probe (trainer ``probe``, ``vq.train.trainers.probe``) trains a classifier of the 1000
ImageNet classes on the features of a finished tokenizer run and never changes the
tokenizer; its top-1/top-5 on the val split says how much the tokens understand.

* ``linear``: the head of MAE's linear probe (batch norm without affine parameters, eps
  1e-6, then one linear layer, truncated-normal init with std 0.01) on the mean over the
  token grid of the code vectors, as the reference's unfinished classification task sets
  it up. The reference trains it for 30k iterations of 512
  images per GPU (4096 on 8 GPUs) with the 'strong' augmentation (RandomResizedCrop with
  scale (0.8, 1), flip) and a cosine schedule, with LARS (lr 1.6, momentum 0.9, trust
  coefficient 0.001, no weight decay). vq.core has no LARS: the head here trains with SGD,
  momentum 0.9, no weight decay, lr 0.1 per 256 images (1.6 at 4096; MAE's base rate, which
  MAE gives LARS), cosine to 0. That rate is our choice, not a published SGD value.
* ``attentive``: one learned query cross-attends over the tokens
  (width 256, 8 heads), then layer norm and a linear layer, trained with AdamW (lr 1e-3,
  weight decay 0.05, 1000 warm-up iterations, cosine to 0); same data and length. These
  values are ours (attentive probes elsewhere use AdamW at such rates).

Every file of this folder is ``probe_recipe`` with its head and the tokenizer run it probes
by default bound, and takes the options::

    it_config     the tokenizer run's resolved config (default: that of the reference run
                  the file names, work_dirs/<run>/<config>.py)
    it_state_dict its weights (default: work_dirs/<run>/checkpoints/latest; required with
                  it_config)
    features      "quantized" (code vectors, the protocol), "codes" (ids, embedded by the
                  probe) or "pre_quant" (the quantizer's input)
    lr            learning rate (linear 1.6, attentive 1e-3)
    batch_size    global batch (4096)                iters       iterations (30000)
    image_size    square images (the tokenizer's)    data_root   ImageNet (data/imagenet)
    strategy      "ddp" or "fsdp"                    workers     loader processes per rank (5)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from vq.core.data import LoaderConfig
from vq.core.errors import UserError
from vq.core.loop import LoopConfig
from vq.core.optim import OptimizationConfig, OptimizerConfig, ScheduleConfig
from vq.core.parallel import StrategyConfig
from vq.train.data import ImageNetConfig
from vq.train.probe_heads import HeadConfig
from vq.train.proposal import FrozenTokenizerConfig
from vq.train.trainers.probe import FeatureSource, ProbeRunConfig

ITERS = 30_000
BATCH_SIZE = 4096  # 512 per GPU on 8 GPUs
SGD_LR_PER_256 = 0.1
ATTENTIVE_LR = 1e-3
ATTENTIVE_WEIGHT_DECAY = 0.05
ATTENTIVE_WARMUP_ITERS = 1000
ATTENTIVE_HEAD = HeadConfig(kind="attentive", width=256, heads=8)


def probe_tokenizer(
    run: str, it_config: str | None, it_state_dict: str | None
) -> FrozenTokenizerConfig:
    """The tokenizer run ``work_dirs/<run>`` (its resolved config and latest checkpoint),
    or the one ``it_config`` and ``it_state_dict`` name."""
    if it_config is not None and it_state_dict is None:
        raise UserError(
            "it_config needs it_state_dict: --config-options it_state_dict::"
            "work_dirs/<tokenizer run>/checkpoints/latest"
        )
    config = it_config or f"work_dirs/{run}/{Path(run).name}.py"
    weights = it_state_dict or f"work_dirs/{run}/checkpoints/latest"
    return FrozenTokenizerConfig(config=Path(config), state_dicts=[Path(weights)])


def probe_optimization(
    head: str, lr: float | None, batch_size: int, iters: int
) -> OptimizationConfig:
    """``linear``: SGD, momentum 0.9, no weight decay, 0.1 per 256 images, cosine to 0;
    ``attentive``: AdamW 1e-3, weight decay 0.05, 1000 warm-up iterations, cosine to 0."""
    if head == "linear":
        rate = lr if lr is not None else SGD_LR_PER_256 * batch_size / 256
        sgd = OptimizerConfig(kind="sgd", lr=rate, momentum=0.9, weight_decay=0.0)
        return OptimizationConfig(optimizer=sgd, schedule=ScheduleConfig(kind="cosine"))
    adamw = OptimizerConfig(
        kind="adamw", lr=lr or ATTENTIVE_LR, weight_decay=ATTENTIVE_WEIGHT_DECAY
    )
    schedule = ScheduleConfig(kind="cosine", warmup_iters=min(ATTENTIVE_WARMUP_ITERS, iters))
    return OptimizationConfig(optimizer=adamw, schedule=schedule)


def probe_recipe(
    head: Literal["linear", "attentive"],
    run: str,
    default_image_size: int,
    *,
    it_config: str | None = None,
    it_state_dict: str | None = None,
    features: FeatureSource = "quantized",
    lr: float | None = None,
    batch_size: int = BATCH_SIZE,
    iters: int = ITERS,
    image_size: int | None = None,
    data_root: str = "data/imagenet",
    strategy: str = "ddp",
    workers: int = 5,
) -> ProbeRunConfig:
    """The ``head`` probe of the tokenizer run ``run`` on ImageNet with the 'strong'
    augmentation; logs every 50 iterations and saves every 5000 (module docstring)."""
    return ProbeRunConfig(
        tokenizer=probe_tokenizer(run, it_config, it_state_dict),
        data=ImageNetConfig(
            root=data_root, image_size=image_size or default_image_size, augmentation="strong"
        ),
        num_classes=1000,
        features=features,
        head=ATTENTIVE_HEAD if head == "attentive" else HeadConfig(kind="linear"),
        optimization=probe_optimization(head, lr, batch_size, iters),
        loop=LoopConfig(
            iters=iters, log_interval=50, visual_interval=iters, checkpoint_interval=5000
        ),
        loader=LoaderConfig(batch_size=batch_size, batch_size_is_global=True, workers=workers),
        strategy=StrategyConfig.option(strategy),
    )
