"""Attentive probe (a learned query over the code vectors, linear; AdamW) of a frozen
VQ-KD distilling CLIP (8192 codes) on ImageNet classification, 224 px, DDP.

    uv run train probe/attentive_vqkd_imagenet_ddp configs/probe/attentive_vqkd_imagenet_ddp.py

By default it probes the tokenizer run of ``configs/vqkd/clip_8192_imagenet_ddp.py``
(``work_dirs/vqkd/clip_8192_imagenet_ddp/``: its resolved config and ``checkpoints/latest``);
``it_config::`` and ``it_state_dict::`` name another. Options and every value of the
recipe: ``probe_recipe`` in configs/probe/_recipe.py.
"""

from functools import partial

from configs.probe._recipe import probe_recipe

config = partial(probe_recipe, "attentive", "vqkd/clip_8192_imagenet_ddp", 224)
