"""FSQ with levels [8, 8, 8, 5, 5, 5] (64000 codes) in the VQGAN f16 autoencoder.

Connectors 256 -> 256 -> levels and back; no quantizer loss; otherwise taming's recipe with
PatchGAN depth 3 and adaptive weight gain 0.8."""

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
        FSQConfig.for_codebook_size(64000),
        discriminator=PatchGANConfig(depth=3),
        gain=0.8,
        connector_hidden=(256,),
        iters=iters,
        batch_size=batch_size,
        workers=workers,
        data=imagenet(data_root, image_size),
    )
