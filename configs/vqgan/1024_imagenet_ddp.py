"""VQGAN f16, 1024 x 256 codebook (L2), PatchGAN depth 3, adaptive weight gain 0.8.

Taming's recipe on ImageNet at 256 px: L1 + LPIPS + hinge GAN from the first iteration,
Adam 5.4e-5 / 4.32e-4 (0.5, 0.9), 260k iterations at a global batch of 96."""

from vq.tokenizers.discriminators import PatchGANConfig
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
        VectorQuantizerConfig.preset("vqgan", num_codes=1024, dim=256),
        discriminator=PatchGANConfig(depth=3),
        gain=0.8,
        iters=iters,
        batch_size=batch_size,
        workers=workers,
        data=imagenet(data_root, image_size),
    )
