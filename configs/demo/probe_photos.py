"""A linear (or attentive) probe of a demo tokenizer on the embedded photos' 9 classes.

Two commands: train a tiny tokenizer (any demo tokenizer run works; here the VQGAN), then a
probe of the photo classes on its frozen features, and a third that reports top-1/top-5
of every probe checkpoint on the val crops::

    uv run train demo/vqgan configs/demo/vqgan_photos.py
    uv run train demo/probe configs/demo/probe_photos.py --config-options \\
        it_config::work_dirs/demo/vqgan/vqgan_photos.py \\
        it_state_dict::work_dirs/demo/vqgan/checkpoints/latest
    uv run val demo/probe work_dirs/demo/probe/probe_photos.py

The val crop of each photo is its whole centred square, which the train crops overlap
(``vq.train.data.photos``): the demo shows that a probe trains and is measured, not how well
the codes generalise. ``features`` picks the probed features (``quantized``, ``codes``,
``pre_quant``), ``head`` the head (``linear``: SGD as the ImageNet recipe, at a demo rate;
``attentive``: AdamW).
"""

from pathlib import Path
from typing import Literal

from vq.core.data import LoaderConfig
from vq.core.errors import UserError
from vq.core.loop import LoopConfig
from vq.core.optim import OptimizationConfig, OptimizerConfig, ScheduleConfig
from vq.train.data import PhotosConfig
from vq.train.probe_heads import HeadConfig
from vq.train.proposal import FrozenTokenizerConfig
from vq.train.trainers.probe import FeatureSource, ProbeRunConfig


def config(
    it_config: str | None = None,
    it_state_dict: str | None = None,
    features: FeatureSource = "quantized",
    head: Literal["linear", "attentive"] = "linear",
    iters: int = 200,
    image_size: int = 32,
    batch_size: int = 15,
    lr: float | None = None,
    workers: int = 0,
) -> ProbeRunConfig:
    if it_config is None or it_state_dict is None:
        raise UserError(
            "the probe demo needs a tokenizer run: --config-options "
            "it_config::work_dirs/demo/vqgan/vqgan_photos.py "
            "it_state_dict::work_dirs/demo/vqgan/checkpoints/latest"
        )
    if head == "linear":
        optimizer = OptimizerConfig(kind="sgd", lr=lr or 0.1, momentum=0.9)
        head_config = HeadConfig(kind="linear")
    else:
        optimizer = OptimizerConfig(kind="adamw", lr=lr or 3e-3, weight_decay=0.05)
        head_config = HeadConfig(kind="attentive", width=32, heads=4)
    return ProbeRunConfig(
        tokenizer=FrozenTokenizerConfig(config=Path(it_config), state_dicts=[Path(it_state_dict)]),
        data=PhotosConfig(image_size=image_size, augmentation="strong"),
        num_classes=9,
        features=features,
        head=head_config,
        optimization=OptimizationConfig(
            optimizer=optimizer, schedule=ScheduleConfig(kind="cosine")
        ),
        loop=LoopConfig(
            iters=iters, log_interval=25, visual_interval=iters, checkpoint_interval=100
        ),
        loader=LoaderConfig(batch_size=batch_size, workers=workers),
    )
