"""VQGAN f16, 8192 x 256 codebook (L2), PatchGAN depth 3, adaptive weight gain 0.8, trained on
LAION-Aesthetics v2 6.5+ instead of ImageNet (``LAIONAestheticsConfig``: its last 25k images are the val split).

Otherwise taming's recipe: L1 + LPIPS + hinge GAN from the first iteration, Adam 5.4e-5 /
4.32e-4 (0.5, 0.9), 260k iterations at a global batch of 96, 256 px with the "strong"
augmentation, DDP.

    uv run train vqgan/8192_laion_aesthetics_ddp configs/vqgan/8192_laion_aesthetics_ddp.py --autocast --auto-resume

Options as the ImageNet files', with ``data_root`` defaulting to ``data/laion/aesthetics``, e.g.
``--config-options data_root::/datasets/laion_aesthetics``; every value of the recipe:
``vqgan_recipe_on`` in configs/vqgan/_recipe.py.
"""

from functools import partial

from configs.vqgan._recipe import vqgan_recipe_on
from vq.train.data import LAIONAestheticsConfig

config = partial(
    vqgan_recipe_on, LAIONAestheticsConfig, "vqgan", "patchgan_depth_3", 0.8, num_codes=8192
)
