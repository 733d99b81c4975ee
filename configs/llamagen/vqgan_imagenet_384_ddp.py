"""LlamaGen's VQGAN at 384 px: the taming f16 autoencoder with a 16384 x 8 codebook of
l2-normalised codes, trained on 384 px images (24x24 tokens).

Otherwise LlamaGen's recipe: L2 + LPIPS reconstruction; GAN weights 0.5 for both players
without the adaptive weight; PatchGAN depth 3 from iteration 20k; Adam 1e-4 (0.9, 0.95);
400k iterations at a global batch of 128 on ImageNet with the "strong" augmentation, DDP.

    uv run train llamagen/vqgan_imagenet_384_ddp configs/llamagen/vqgan_imagenet_384_ddp.py --autocast --auto-resume

Options as ``vqgan_imagenet_ddp.py``'s (``image_size`` defaults to 384 here); every value of
the recipe: ``llamagen_variant`` in configs/llamagen/_recipe.py.
"""

from functools import partial

from configs.llamagen._recipe import llamagen_recipe

config = partial(llamagen_recipe, image_size=384)
