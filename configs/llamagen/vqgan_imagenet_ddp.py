"""LlamaGen's VQGAN: the taming f16 autoencoder with a 16384 x 8 codebook of l2-normalised
codes (the pixel-decoder recipe of the paper's pipeline).

L2 + LPIPS reconstruction; GAN weights 0.5 for both players without the adaptive weight;
PatchGAN depth 3 from iteration 20k; Adam 1e-4 (0.9, 0.95); 400k iterations at a global
batch of 128 on ImageNet at 256 px, DDP.

    uv run train llamagen/vqgan_imagenet_ddp configs/llamagen/vqgan_imagenet_ddp.py --autocast --auto-resume

Options, e.g. ``--config-options num_codes:128 image_size:384``, and every value of the
recipe: ``llamagen_recipe`` in configs/llamagen/_recipe.py.
"""

from configs.llamagen._recipe import llamagen_recipe

config = llamagen_recipe
