"""VQ-KD distilling OpenAI CLIP ViT-B/16 (512-d projected patch tokens) into 8192 x 32
codes, trained on LAION-Aesthetics v2 6.5+ instead of ImageNet (``LAIONAestheticsConfig``: its last 25k images are the val split).

Otherwise BEiT v2's recipe: 224 px with the 'default' augmentation, batch 512 (global),
AdamW 2e-4 with 25k warm-up iterations then cosine to 1e-5, 250k iterations, DDP.

    uv run train vqkd/clip_8192_laion_aesthetics_ddp configs/vqkd/clip_8192_laion_aesthetics_ddp.py --autocast --auto-resume

Options as the ImageNet files', with ``data_root`` defaulting to ``data/laion/aesthetics``, e.g.
``--config-options data_root::/datasets/laion_aesthetics``; every value of the recipe:
``vqkd_recipe_on`` in configs/vqkd/_recipe.py.
"""

from functools import partial

from configs.vqkd._recipe import vqkd_recipe_on
from vq.train.data import LAIONAestheticsConfig

config = partial(
    vqkd_recipe_on,
    LAIONAestheticsConfig,
    "clip",
    num_codes=8192,
    teacher_weights="pretrained/teachers/clip.safetensors",
)
