"""LlamaGen's VQGAN judged by a StyleGAN2 discriminator instead of the PatchGAN: the taming
f16 autoencoder with a 16384 x 8 codebook of l2-normalised codes. The discriminator is built
for one resolution: it follows ``image_size``.

Otherwise LlamaGen's recipe: L2 + LPIPS reconstruction; hinge GAN from iteration 20k with
weights 0.5 for both players and no adaptive weight; Adam 1e-4 (0.9, 0.95); 400k iterations
at a global batch of 128 on ImageNet at 256 px, DDP.

    uv run train llamagen/vqgan_stylegan2_imagenet_ddp configs/llamagen/vqgan_stylegan2_imagenet_ddp.py --autocast --auto-resume

Options as ``vqgan_imagenet_ddp.py``'s; every value of the recipe: ``llamagen_variant`` in
configs/llamagen/_recipe.py.
"""

from functools import partial

from configs.llamagen._recipe import llamagen_variant

config = partial(llamagen_variant, "f16", "stylegan2", "attention")
