"""A tiny convolutional autoencoder on the embedded photos: trains on CPU in about a minute."""

from vq.core.data import LoaderConfig
from vq.core.loop import LoopConfig
from vq.core.optim import OptimizationConfig, OptimizerConfig
from vq.train.data import PhotosConfig
from vq.train.trainers.autoencoder import AutoencoderRunConfig


def config(iters: int = 300, image_size: int = 32, batch_size: int = 16, lr: float = 2e-3):
    return AutoencoderRunConfig(
        loop=LoopConfig(iters=iters, log_interval=25, visual_interval=100, checkpoint_interval=100),
        loader=LoaderConfig(batch_size=batch_size, workers=0),
        data=PhotosConfig(image_size=image_size, augmentation="strong"),
        optimization=OptimizationConfig(optimizer=OptimizerConfig(kind="adam", lr=lr)),
    )
