"""A pixel decoder for VQ-KD or Cluster tokens with LlamaGen's VQGAN recipe (the paper's).

The tokenizer of ``it_config`` (a VQ-KD or Cluster config file, or the resolved config in
its run's work dir) is frozen; its weights come from ``--load-model-from``. ``pre_decode``
(1x1 conv D -> 256) and the taming f16 decoder (``decoder::vqkd`` / ``decoder::vqkd_large``:
a ViT pixel decoder) learn with L2 + LPIPS, GAN weights 0.5 without the adaptive weight,
PatchGAN depth 3 from iteration 20k, Adam 1e-4 (0.9, 0.95), 400k iterations at a global
batch of 128 on ImageNet at 256 px (VQ-KD: 16x16 tokens through interpolated position
embeddings)::

    uv run train decoder/llamagen/vqkd_clip_8192_imagenet_ddp/llamagen configs/decoder/llamagen.py \\
        --config-options it_config::configs/vqkd/clip_8192_imagenet_ddp.py \\
        --load-model-from work_dirs/vqkd/clip_8192_imagenet_ddp/checkpoints/iter_250000
"""

from vq.train.trainers.decoder import decoder_run, feature_tokenizer_of
from vq.train.trainers.vqgan import imagenet, llamagen_recipe


def config(
    it_config: str = "configs/vqkd/clip_8192_imagenet_ddp.py",
    decoder: str = "vqgan",
    iters: int = 400_000,
    batch_size: int = 128,
    data_root: str = "data/imagenet",
    image_size: int = 256,
    workers: int = 10,
):
    recipe = llamagen_recipe(
        iters=iters, batch_size=batch_size, workers=workers, data=imagenet(data_root, image_size)
    )
    return decoder_run(recipe, feature_tokenizer_of(it_config), decoder)
