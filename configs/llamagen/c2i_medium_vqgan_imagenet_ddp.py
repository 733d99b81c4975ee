"""LLaMA medium (LlamaGen GPT-L: 24 x 1024, 16 heads) on the tokens of LlamaGen's VQGAN
(16384 x 8, f16: ``configs/llamagen/vqgan_imagenet_ddp.py`` is the default ``ir_config``),
class-to-image with classifier-free guidance on LlamaGen's terms: AdamW 1e-4, betas
(0.9, 0.95), weight decay 0.05, cosine to 0; 250k iterations at a global batch of 256;
label dropout 0.1; sampling at guidance 1.75 without top-k/top-p; ImageNet 256 px, DDP.

    uv run train llamagen/c2i_medium_vqgan_imagenet_ddp configs/llamagen/c2i_medium_vqgan_imagenet_ddp.py \\
        --config-options ir_state_dict::work_dirs/llamagen/vqgan_imagenet_ddp/checkpoints/iter_400000

A LlamaGen VQGAN trained with options is read from its resolved config instead
(``ir_config::work_dirs/llamagen/vqgan_imagenet_ddp/vqgan_imagenet_ddp.py``). Options as
``c2i_medium_imagenet_ddp.py``'s; every value of the recipe: ``llamagen_c2i_recipe`` in
configs/llamagen/_recipe.py.
"""

from functools import partial

from configs.llamagen._recipe import llamagen_c2i_recipe

config = partial(llamagen_c2i_recipe, ir_config="configs/llamagen/vqgan_imagenet_ddp.py")
