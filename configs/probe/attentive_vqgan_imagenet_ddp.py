"""Attentive probe (a learned query over the code vectors, linear; AdamW) of a frozen
VQGAN (8192 codes, dd2 aglwg075) on ImageNet classification, 256 px, DDP.

    uv run train probe/attentive_vqgan_imagenet_ddp configs/probe/attentive_vqgan_imagenet_ddp.py

By default it probes the tokenizer run of ``configs/vqgan/8192_dd2_aglwg075_imagenet_ddp.py``
(``work_dirs/vqgan/8192_dd2_aglwg075_imagenet_ddp/``: its resolved config and ``checkpoints/latest``);
``it_config::`` and ``it_state_dict::`` name another. Options and every value of the
recipe: ``probe_recipe`` in configs/probe/_recipe.py.
"""

from functools import partial

from configs.probe._recipe import probe_recipe

config = partial(probe_recipe, "attentive", "vqgan/8192_dd2_aglwg075_imagenet_ddp", 256)
