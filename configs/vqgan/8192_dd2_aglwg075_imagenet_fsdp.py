"""``vqgan/8192_dd2_aglwg075_imagenet_ddp`` with FSDP2 (sharded parameters, gradients and
optimizer states; sharded checkpoints, see ``consolidate``)."""

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
        VectorQuantizerConfig.preset("vqgan", num_codes=8192, dim=256),
        discriminator=PatchGANConfig(depth=2),
        gain=0.75,
        iters=iters,
        batch_size=batch_size,
        workers=workers,
        data=imagenet(data_root, image_size),
        strategy="fsdp",
    )
