"""VQ-KD distilling OpenAI CLIP ViT-B/16 (512-d projected patch tokens) into 8192 x 32
codes, trained on SA-Med2D-20M (medical images) instead of ImageNet (``SAMed2DConfig``: every n // 25000-th image is val).

Otherwise BEiT v2's recipe: 224 px with the 'default' augmentation, batch 512 (global),
AdamW 2e-4 with 25k warm-up iterations then cosine to 1e-5, 250k iterations, DDP.

    uv run train vqkd/clip_8192_sa_med2d_20m_ddp configs/vqkd/clip_8192_sa_med2d_20m_ddp.py --autocast --auto-resume

Options as the ImageNet files', with ``data_root`` defaulting to ``data/sa_med2d``, e.g.
``--config-options data_root::/datasets/sa_med2d_20m``; every value of the recipe:
``vqkd_recipe_on`` in configs/vqkd/_recipe.py.
"""

from functools import partial

from configs.vqkd._recipe import vqkd_recipe_on
from vq.train.data import SAMed2DConfig

config = partial(
    vqkd_recipe_on,
    SAMed2DConfig,
    "clip",
    num_codes=8192,
    teacher_weights="pretrained/teachers/clip.safetensors",
)
