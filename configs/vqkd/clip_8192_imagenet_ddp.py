"""VQ-KD distilling OpenAI CLIP ViT-B/16 (512-d projected patch tokens) into 8192 x 32
codes: ImageNet at 224 px ('default' augmentation), batch 512 (global), 250k iterations,
DDP.

    uv run train vqkd/clip_8192_imagenet_ddp configs/vqkd/clip_8192_imagenet_ddp.py --autocast --auto-resume

Options, e.g. ``--config-options num_codes:16384 lr:1e-4 data_root::/datasets/imagenet``,
and every value of the recipe: ``vqkd_recipe`` in configs/vqkd/_recipe.py.
"""

from functools import partial

from configs.vqkd._recipe import vqkd_recipe

config = partial(
    vqkd_recipe, "clip", num_codes=8192, teacher_weights="pretrained/teachers/clip.safetensors"
)
