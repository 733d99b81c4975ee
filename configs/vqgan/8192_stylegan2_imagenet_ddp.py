"""VQGAN f16, 8192 x 256 codebook (L2), judged by a StyleGAN2 discriminator (adaptive weight
gain 0.8). The discriminator is built for one resolution: it follows ``image_size``.

Otherwise taming's recipe: L1 + LPIPS + hinge GAN from the first iteration, Adam 5.4e-5 /
4.32e-4 (0.5, 0.9), 260k iterations at a global batch of 96 on ImageNet at 256 px, DDP.

    uv run train vqgan/8192_stylegan2_imagenet_ddp configs/vqgan/8192_stylegan2_imagenet_ddp.py --autocast --auto-resume

Options, e.g. ``--config-options num_codes:1024 lr:1e-4 data_root::/datasets/imagenet``,
and every value of the recipe: ``vqgan_recipe`` in configs/vqgan/_recipe.py.
"""

from functools import partial

from configs.vqgan._recipe import vqgan_recipe

config = partial(vqgan_recipe, "vqgan", "stylegan2", 0.8, num_codes=8192)
