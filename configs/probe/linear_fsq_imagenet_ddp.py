"""Linear probe (mean code vector, batch norm, linear; SGD) of a frozen
FSQ (8000 codes) on ImageNet classification, 256 px, DDP.

    uv run train probe/linear_fsq_imagenet_ddp configs/probe/linear_fsq_imagenet_ddp.py

By default it probes the tokenizer run of ``configs/fsq/8000_imagenet_ddp.py``
(``work_dirs/fsq/8000_imagenet_ddp/``: its resolved config and ``checkpoints/latest``);
``it_config::`` and ``it_state_dict::`` name another. Options and every value of the
recipe: ``probe_recipe`` in configs/probe/_recipe.py.
"""

from functools import partial

from configs.probe._recipe import probe_recipe

config = partial(probe_recipe, "linear", "fsq/8000_imagenet_ddp", 256)
