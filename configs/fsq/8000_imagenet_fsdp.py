"""``fsq/8000_imagenet_ddp`` with FSDP2 (sharded parameters, gradients and optimizer states)."""

from vq.tokenizers.discriminators import PatchGANConfig
from vq.tokenizers.quantizers import FSQConfig
from vq.train.trainers.vqgan import imagenet, vqgan_recipe


def config(
    iters: int = 260_000,
    batch_size: int = 96,
    data_root: str = "data/imagenet",
    image_size: int = 256,
    workers: int = 5,
):
    return vqgan_recipe(
        FSQConfig.for_codebook_size(8000),
        discriminator=PatchGANConfig(depth=3),
        gain=0.8,
        connector_hidden=(256,),
        iters=iters,
        batch_size=batch_size,
        workers=workers,
        data=imagenet(data_root, image_size),
        strategy="fsdp",
    )
