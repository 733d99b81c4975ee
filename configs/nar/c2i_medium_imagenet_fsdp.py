"""MaskGIT medium (bidirectional, 24 x 1024, 16 heads) from scratch, class-to-image
without guidance; 12 decoding steps;
ImageNet 256 px, FSDP (one shard unit per transformer block).

    uv run train nar/c2i_medium_imagenet_fsdp configs/nar/c2i_medium_imagenet_fsdp.py \\
        --config-options ir_config::work_dirs/<tokenizer run>/<config>.py \\
        ir_state_dict::work_dirs/<tokenizer run>/checkpoints/latest

Options (``lr``, ``batch_size``, ``iters``, ``image_size``, ``data_root``, ``strategy``,
``workers``, ``transformer_size``, ``token_file``) and every value of the recipe:
``c2i_recipe`` in configs/nar/_recipe.py.
"""

from functools import partial

from configs.nar._recipe import c2i_recipe

config = partial(c2i_recipe, False, strategy="fsdp")
