"""The tiny photo demo of ``vqgan_photos.py`` with CVQ-VAE's dead-code revival (cosine search).

Codes the encoder stops choosing are pulled towards their nearest batch features, so
``codebook_usage`` stays higher than with the plain VQGAN demo. LPIPS is off unless
``lpips:1.0`` (see ``vqgan_photos.py``).
"""

from configs.demo.vqgan_photos import photos_run
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.train.trainers.vqgan import VQGANRunConfig


def config(
    iters: int = 300,
    image_size: int = 32,
    batch_size: int = 16,
    num_codes: int = 512,
    code_dim: int = 8,
    discriminator_start: int = 150,
    lpips: float = 0.0,
    lr: float = 2e-3,
    workers: int = 0,
) -> VQGANRunConfig:
    return photos_run(
        VectorQuantizerConfig.preset("cvqvae", num_codes, code_dim, distance="cosine"),
        iters=iters,
        image_size=image_size,
        batch_size=batch_size,
        discriminator_start=discriminator_start,
        lpips=lpips,
        lr=lr,
        workers=workers,
    )
