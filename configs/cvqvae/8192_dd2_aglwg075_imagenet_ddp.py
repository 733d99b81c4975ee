"""CVQ-VAE: the main VQGAN baseline (8192 x 256, dd2, aglwg075) plus online re-initialisation
of dead codes towards their nearest batch features (running usage EMA 0.99).

The code search uses the COSINE distance, as the CVQ-VAE paper and the reference config
intend; the reference silently resolved to L2 because the option was lost on its way
through the config files."""

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
        VectorQuantizerConfig.preset("cvqvae", num_codes=8192, dim=256, distance="cosine"),
        discriminator=PatchGANConfig(depth=2),
        gain=0.75,
        iters=iters,
        batch_size=batch_size,
        workers=workers,
        data=imagenet(data_root, image_size),
    )
