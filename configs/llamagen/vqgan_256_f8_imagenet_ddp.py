"""LlamaGen's VQGAN, f8: the taming autoencoder with one resampling less (encoder widths
x(1, 1, 2, 4), decoder x(4, 2, 1, 1); 32x32 tokens at 256 px) and 256 x 8 l2-normalised
codes.

Otherwise LlamaGen's recipe: L2 + LPIPS reconstruction; GAN weights 0.5 for both players
without the adaptive weight; PatchGAN depth 3 from iteration 20k; Adam 1e-4 (0.9, 0.95);
400k iterations at a global batch of 128 on ImageNet at 256 px, DDP.

    uv run train llamagen/vqgan_256_f8_imagenet_ddp configs/llamagen/vqgan_256_f8_imagenet_ddp.py --autocast --auto-resume

Options as ``vqgan_imagenet_ddp.py``'s (``num_codes`` defaults to 256 here); every value of
the recipe: ``llamagen_variant`` in configs/llamagen/_recipe.py.
"""

from functools import partial

from configs.llamagen._recipe import llamagen_variant

config = partial(llamagen_variant, "f8", "patchgan_depth_3", "attention", num_codes=256)
