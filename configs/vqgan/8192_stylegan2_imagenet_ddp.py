"""VQGAN f16, 8192 x 256 codebook, judged by a StyleGAN2 discriminator (adaptive weight gain 0.8).

The StyleGAN2 discriminator is built for one resolution: it follows ``image_size``."""

from vq.tokenizers.discriminators import StyleGAN2DiscriminatorConfig
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.train.trainers.vqgan import imagenet, vqgan_recipe


def config(
    iters: int = 260_000,
    batch_size: int = 96,
    data_root: str = "data/imagenet",
    image_size: int = 256,
    workers: int = 5,
):
    return vqgan_recipe(
        VectorQuantizerConfig.preset("vqgan", num_codes=8192, dim=256),
        discriminator=StyleGAN2DiscriminatorConfig(image_size=image_size),
        gain=0.8,
        iters=iters,
        batch_size=batch_size,
        workers=workers,
        data=imagenet(data_root, image_size),
    )
