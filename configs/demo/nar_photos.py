"""A tiny class-to-image MaskGIT on the embedded photos (9 classes), on CPU in minutes.

Two commands: train a tiny tokenizer, then this network on its tokens (any tokenizer run
whose config has ``build_tokenizer()`` works; here the VQGAN demo)::

    uv run train demo/vqgan configs/demo/vqgan_photos.py
    uv run train demo/nar configs/demo/nar_photos.py --config-options \\
        ir_config::work_dirs/demo/vqgan/vqgan_photos.py \\
        ir_state_dict::work_dirs/demo/vqgan/checkpoints/latest

and a third to look at samples::

    uv run sample demo/nar work_dirs/demo/nar/nar_photos.py \\
        --load-model-from work_dirs/demo/nar/checkpoints/latest --per-class 4

``token_file::PATH`` trains on tokens written ahead (``write_token_file``) instead of
tokenizing the photos in every step; ``ir_config`` is then optional (without it the run
shows no image visuals, and the file must record its codebook size).
"""

from pathlib import Path

from vq.core.data import LoaderConfig
from vq.core.loop import LoopConfig
from vq.core.optim import OptimizationConfig, OptimizerConfig, ScheduleConfig
from vq.generators import MaskedNetworkConfig
from vq.train.data import PhotosConfig, TokenFileConfig
from vq.train.proposal import FrozenTokenizerConfig
from vq.train.trainers.nar import MaskedSamplingConfig, NARRunConfig


def config(
    ir_config: str | None = None,
    ir_state_dict: str | None = None,
    token_file: str | None = None,
    iters: int = 400,
    image_size: int = 32,
    batch_size: int = 16,
    lr: float = 1e-3,
    guidance: bool = True,
    num_steps: int = 8,
):
    tokenizer = None
    if ir_config is not None:
        weights = [Path(ir_state_dict)] if ir_state_dict else []
        tokenizer = FrozenTokenizerConfig(config=Path(ir_config), state_dicts=weights)
    images = PhotosConfig(image_size=image_size, augmentation="weak")
    return NARRunConfig(
        network=MaskedNetworkConfig(preset="tiny", label_dropout=0.1 if guidance else 0.0),
        tokenizer=tokenizer,
        data=TokenFileConfig(path=Path(token_file)) if token_file else images,
        num_classes=9,
        optimization=OptimizationConfig(
            optimizer=OptimizerConfig(kind="adamw", lr=lr, betas=(0.9, 0.96), weight_decay=0.045),
            schedule=ScheduleConfig(kind="cosine"),
        ),
        sampling=MaskedSamplingConfig(
            guidance_scale=1.75 if guidance else 1.0, num_steps=num_steps
        ),
        loop=LoopConfig(iters=iters, log_interval=25, visual_interval=100, checkpoint_interval=100),
        loader=LoaderConfig(batch_size=batch_size, workers=0),
    )
