"""A pixel decoder for VQ-KD or Cluster tokens with taming's ``dd2_aglwg075`` VQGAN recipe.

The tokenizer of ``it_config`` (a VQ-KD or Cluster config file, or the resolved config in
its run's work dir) is frozen; its weights come from ``--load-model-from``. ``pre_decode``
(1x1 conv D -> 256) and the taming f16 decoder (``decoder::vqkd`` / ``decoder::vqkd_large``:
a ViT pixel decoder) learn with L1 + LPIPS + hinge GAN from the first iteration, the
adaptive GAN weight with gain 0.75, PatchGAN depth 2, Adam 5.4e-5 / 4.32e-4 (0.5, 0.9),
260k iterations at a global batch of 96 on ImageNet at 256 px::

    uv run train decoder/vqgan/vqkd_clip_8192_imagenet_ddp/vqgan configs/decoder/vqgan.py \\
        --config-options it_config::configs/vqkd/clip_8192_imagenet_ddp.py \\
        --load-model-from work_dirs/vqkd/clip_8192_imagenet_ddp/checkpoints/iter_250000
"""

from vq.tokenizers.discriminators import PatchGANConfig
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.train.trainers.decoder import decoder_run, feature_tokenizer_of
from vq.train.trainers.vqgan import imagenet, vqgan_recipe


def config(
    it_config: str = "configs/vqkd/clip_8192_imagenet_ddp.py",
    decoder: str = "vqgan",
    iters: int = 260_000,
    batch_size: int = 96,
    data_root: str = "data/imagenet",
    image_size: int = 256,
    workers: int = 5,
):
    recipe = vqgan_recipe(
        # the recipe's own codebook; decoder_run replaces its autoencoder
        VectorQuantizerConfig.preset("vqgan", num_codes=8192, dim=256),
        discriminator=PatchGANConfig(depth=2),
        gain=0.75,
        iters=iters,
        batch_size=batch_size,
        workers=workers,
        data=imagenet(data_root, image_size),
    )
    return decoder_run(recipe, feature_tokenizer_of(it_config), decoder)
