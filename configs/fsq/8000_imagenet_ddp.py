"""FSQ with levels [8, 8, 5, 5, 5] (8000 codes) in the VQGAN f16 autoencoder.

Connectors 256 -> 256 -> levels and back; no quantizer loss; otherwise taming's recipe with
PatchGAN depth 3 and adaptive weight gain 0.8: ImageNet at 256 px, 260k iterations at a
global batch of 96, DDP.

    uv run train fsq/8000_imagenet_ddp configs/fsq/8000_imagenet_ddp.py --autocast --auto-resume

Options, e.g. ``--config-options num_codes:64000 lr:1e-4 data_root::/datasets/imagenet``
(``num_codes`` picks the levels: 8000 or 64000), and every value of the recipe:
``fsq_recipe`` in configs/vqgan/_recipe.py.
"""

from functools import partial

from configs.vqgan._recipe import fsq_recipe

config = partial(fsq_recipe, num_codes=8000)
