"""Ablation of LlamaGen's VQGAN (``configs/llamagen/vqgan_imagenet_ddp.py``) without its
attention: neither the self-attention after the blocks of the lowest-resolution level nor
the Res-Attn-Res mid ("refine") block, in the encoder and in the decoder. The autoencoder is
then purely convolutional (residual blocks and resamplings only).

Otherwise LlamaGen's recipe: 16384 x 8 l2-normalised codes, f16; L2 + LPIPS
reconstruction; GAN weights 0.5 without the adaptive weight; PatchGAN depth 3 from
iteration 20k; Adam 1e-4 (0.9, 0.95); 400k iterations at a global batch of 128 on ImageNet
at 256 px, DDP.

    uv run train exps/llamagen_vqgan_imagenet_ddp-no_refine_layer configs/exps/llamagen_vqgan_imagenet_ddp-no_refine_layer.py --autocast --auto-resume

Options as ``configs/llamagen/vqgan_imagenet_ddp.py``'s; every value of the recipe:
``llamagen_variant`` in configs/llamagen/_recipe.py.
"""

from functools import partial

from configs.llamagen._recipe import llamagen_variant

config = partial(llamagen_variant, "f16", "patchgan_depth_3", "no_attention")
