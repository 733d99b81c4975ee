"""FSQ with levels [8, 8, 8, 5, 5, 5] (64000 codes): ``fsq/8000_imagenet_ddp`` with one more
8-level channel (connectors 256 -> 256 -> 6 and back), the same taming recipe, DDP.

    uv run train fsq/64000_imagenet_ddp configs/fsq/64000_imagenet_ddp.py --autocast --auto-resume

Options, e.g. ``--config-options num_codes:64000 lr:1e-4 data_root::/datasets/imagenet``
(``num_codes`` picks the levels: 8000 or 64000), and every value of the recipe:
``fsq_recipe`` in configs/vqgan/_recipe.py.
"""

from functools import partial

from configs.vqgan._recipe import fsq_recipe

config = partial(fsq_recipe, num_codes=64000)
