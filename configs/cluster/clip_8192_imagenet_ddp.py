"""Cluster: 8192 codes fitted to the frozen patch features of OpenAI CLIP ViT-B/16 without
projection (768-d) at 256 px (16x16 tokens); ImageNet 256 px ('strong' augmentation),
batch 256 (global), 100k iterations, DDP.

    uv run train cluster/clip_8192_imagenet_ddp configs/cluster/clip_8192_imagenet_ddp.py --autocast --auto-resume

Options, e.g. ``--config-options num_codes:16384 lr:1e-4 data_root::/datasets/imagenet``,
and every value of the recipe: ``cluster_recipe`` in configs/cluster/_recipe.py.
"""

from functools import partial

from configs.cluster._recipe import cluster_recipe

config = partial(
    cluster_recipe, "clip", num_codes=8192, teacher_weights="pretrained/teachers/clip.safetensors"
)
