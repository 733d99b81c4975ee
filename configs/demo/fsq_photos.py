"""The tiny photo demo of ``vqgan_photos.py`` with FSQ: levels [8, 5, 5, 5] (1000 codes)
behind 1x1 conv connectors 32 -> 32 -> 4 and back. LPIPS is off unless ``lpips:1.0``.
"""

from configs.demo.vqgan_photos import photos_run
from vq.tokenizers.quantizers import FSQConfig
from vq.train.trainers.vqgan import VQGANRunConfig


def config(
    iters: int = 300,
    image_size: int = 32,
    batch_size: int = 16,
    levels: tuple[int, ...] = (8, 5, 5, 5),
    discriminator_start: int = 150,
    lpips: float = 0.0,
    lr: float = 2e-3,
    workers: int = 0,
) -> VQGANRunConfig:
    return photos_run(
        FSQConfig(levels=list(levels)),
        connector_hidden=(32,),
        iters=iters,
        image_size=image_size,
        batch_size=batch_size,
        discriminator_start=discriminator_start,
        lpips=lpips,
        lr=lr,
        workers=workers,
    )
