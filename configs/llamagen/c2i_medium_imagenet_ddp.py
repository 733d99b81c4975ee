"""LLaMA medium (LlamaGen GPT-L: 24 x 1024, 16 heads, ~343M parameters) from scratch,
class-to-image with classifier-free guidance on LlamaGen's terms: AdamW 1e-4, betas
(0.9, 0.95), weight decay 0.05, cosine to 0; 250k iterations at a global batch of 256;
label dropout 0.1; sampling at guidance 1.75 without top-k/top-p; ImageNet 256 px, DDP.

The tokenizer is any tokenizer run, in the paper a VQ-KD with its pixel decoder::

    uv run train llamagen/c2i_medium_imagenet_ddp configs/llamagen/c2i_medium_imagenet_ddp.py \\
        --config-options ir_config::work_dirs/<decoder run>/<config>.py \\
        ir_state_dict::work_dirs/<decoder run>/checkpoints/latest \\
        it_state_dict::work_dirs/<tokenizer run>/checkpoints/latest

Options (``ir_config``, ``ir_state_dict``, ``it_state_dict``, ``lr``, ``batch_size``,
``iters``, ``image_size``, ``data_root``, ``strategy``, ``workers``, ``transformer_size``,
``token_file``) and every value of the recipe: ``llamagen_c2i_recipe`` in
configs/llamagen/_recipe.py.
"""

from configs.llamagen._recipe import llamagen_c2i_recipe

config = llamagen_c2i_recipe
