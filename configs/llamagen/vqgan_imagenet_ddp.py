"""LlamaGen's VQGAN: the taming f16 autoencoder with a 16384 x 8 codebook of l2-normalised
codes (the pixel-decoder recipe of the paper's pipeline).

L2 + LPIPS reconstruction; GAN weights 0.5 for both players without the adaptive weight;
PatchGAN depth 3 from iteration 20k; Adam 1e-4 (0.9, 0.95); 400k iterations at a global
batch of 128 on ImageNet at 256 px."""

from vq.train.trainers.vqgan import imagenet, llamagen_recipe


def config(
    iters: int = 400_000,
    batch_size: int = 128,
    data_root: str = "data/imagenet",
    image_size: int = 256,
    workers: int = 10,
    num_codes: int = 16384,
    code_dim: int = 8,
):
    return llamagen_recipe(
        num_codes=num_codes,
        code_dim=code_dim,
        iters=iters,
        batch_size=batch_size,
        workers=workers,
        data=imagenet(data_root, image_size),
    )
