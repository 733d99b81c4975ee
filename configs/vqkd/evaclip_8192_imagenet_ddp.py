"""VQ-KD distilling EVA02-CLIP-B/16 (768-d patch tokens) into 8192 x 32 codes: ImageNet at
224 px ('default' augmentation), batch 512 (global), 250k iterations, DDP.

    uv run train vqkd/evaclip_8192_imagenet_ddp configs/vqkd/evaclip_8192_imagenet_ddp.py --autocast --auto-resume

Options, e.g. ``--config-options num_codes:16384 lr:1e-4 data_root::/datasets/imagenet``,
and every value of the recipe: ``vqkd_recipe`` in configs/vqkd/_recipe.py.
"""

from functools import partial

from configs.vqkd._recipe import vqkd_recipe

config = partial(
    vqkd_recipe,
    "evaclip",
    num_codes=8192,
    teacher_weights="pretrained/teachers/evaclip.safetensors",
)
