"""The main VQGAN baseline (``vqgan/8192_dd2_aglwg075_imagenet_ddp``) with FSDP2: sharded
parameters, gradients and optimizer states; sharded checkpoints (see ``consolidate``).

    uv run train vqgan/8192_dd2_aglwg075_imagenet_fsdp configs/vqgan/8192_dd2_aglwg075_imagenet_fsdp.py --autocast --auto-resume

Options, e.g. ``--config-options num_codes:1024 lr:1e-4 data_root::/datasets/imagenet``,
and every value of the recipe: ``vqgan_recipe`` in configs/vqgan/_recipe.py.
"""

from functools import partial

from configs.vqgan._recipe import vqgan_recipe

config = partial(vqgan_recipe, "vqgan", "patchgan_depth_2", 0.75, num_codes=8192, strategy="fsdp")
