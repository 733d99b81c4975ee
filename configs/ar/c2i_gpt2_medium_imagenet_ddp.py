"""GPT-2 medium (24 x 1024, 16 heads) initialised from the text weights in
pretrained/huggingface/gpt2-medium,
class-to-image without guidance;
ImageNet 256 px, DDP.

    uv run train ar/c2i_gpt2_medium_imagenet_ddp configs/ar/c2i_gpt2_medium_imagenet_ddp.py \\
        --config-options ir_config::work_dirs/<tokenizer run>/<config>.py \\
        ir_state_dict::work_dirs/<tokenizer run>/checkpoints/latest

Options (``lr``, ``batch_size``, ``iters``, ``image_size``, ``data_root``, ``strategy``,
``workers``, ``transformer_size``, ``token_file``) and every value of the recipe:
``c2i_recipe`` in configs/ar/_recipe.py.
"""

from functools import partial

from configs.ar._recipe import c2i_recipe

config = partial(c2i_recipe, "gpt2", False)
