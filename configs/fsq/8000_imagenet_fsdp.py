"""``fsq/8000_imagenet_ddp`` with FSDP2 (sharded parameters, gradients and optimizer states;
sharded checkpoints, see ``consolidate``).

    uv run train fsq/8000_imagenet_fsdp configs/fsq/8000_imagenet_fsdp.py --autocast --auto-resume

Options, e.g. ``--config-options num_codes:64000 lr:1e-4 data_root::/datasets/imagenet``
(``num_codes`` picks the levels: 8000 or 64000), and every value of the recipe:
``fsq_recipe`` in configs/vqgan/_recipe.py.
"""

from functools import partial

from configs.vqgan._recipe import fsq_recipe

config = partial(fsq_recipe, num_codes=8000, strategy="fsdp")
