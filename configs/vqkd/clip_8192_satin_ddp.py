"""VQ-KD distilling OpenAI CLIP ViT-B/16 (512-d projected patch tokens) into 8192 x 32
codes, trained on SATIN (19 remote-sensing sets) instead of ImageNet (``SATINConfig``: every 10th image of each set is val).

Otherwise BEiT v2's recipe: 224 px with the 'default' augmentation, batch 512 (global),
AdamW 2e-4 with 25k warm-up iterations then cosine to 1e-5, 250k iterations, DDP.

    uv run train vqkd/clip_8192_satin_ddp configs/vqkd/clip_8192_satin_ddp.py --autocast --auto-resume

Options as the ImageNet files', with ``data_root`` defaulting to ``data/satin``, e.g.
``--config-options data_root::/datasets/satin``; every value of the recipe:
``vqkd_recipe_on`` in configs/vqkd/_recipe.py.
"""

from functools import partial

from configs.vqkd._recipe import vqkd_recipe_on
from vq.train.data import SATINConfig

config = partial(
    vqkd_recipe_on,
    SATINConfig,
    "clip",
    num_codes=8192,
    teacher_weights="pretrained/teachers/clip.safetensors",
)
