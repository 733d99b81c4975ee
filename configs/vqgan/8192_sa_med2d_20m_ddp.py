"""VQGAN f16, 8192 x 256 codebook (L2), PatchGAN depth 3, adaptive weight gain 0.8, trained on
SA-Med2D-20M (medical images) instead of ImageNet (``SAMed2DConfig``: every n // 25000-th image is val).

Otherwise taming's recipe: L1 + LPIPS + hinge GAN from the first iteration, Adam 5.4e-5 /
4.32e-4 (0.5, 0.9), 260k iterations at a global batch of 96, 256 px with the "strong"
augmentation, DDP.

    uv run train vqgan/8192_sa_med2d_20m_ddp configs/vqgan/8192_sa_med2d_20m_ddp.py --autocast --auto-resume

Options as the ImageNet files', with ``data_root`` defaulting to ``data/sa_med2d``, e.g.
``--config-options data_root::/datasets/sa_med2d_20m``; every value of the recipe:
``vqgan_recipe_on`` in configs/vqgan/_recipe.py.
"""

from functools import partial

from configs.vqgan._recipe import vqgan_recipe_on
from vq.train.data import SAMed2DConfig

config = partial(vqgan_recipe_on, SAMed2DConfig, "vqgan", "patchgan_depth_3", 0.8, num_codes=8192)
