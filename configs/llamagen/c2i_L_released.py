"""LlamaGen's released GPT-L (24 x 1024, 16 heads, ~343M) on its ds16 VQGAN, class-to-image
with guidance 2.0: sampling and testing the weights of ``uv run convert llamagen-gpt``::

    uv run sample llamagen/c2i_L_samples configs/llamagen/c2i_L_released.py \\
        --load-model-from generators/llamagen_c2i_L_256/model.safetensors

For ``c2i_L_256.pt`` (256 px, the default) or ``c2i_L_384.pt`` (``image_size:384``).
``image_size`` must be the checkpoint's (its grid is what the rotary embedding encodes). The
options are described in configs/llamagen/_released.py.
"""

from configs.llamagen._released import TOKENIZER_CONFIG, TOKENIZER_WEIGHTS, released_recipe


def config(
    ir_config: str = TOKENIZER_CONFIG,
    ir_state_dict: str = TOKENIZER_WEIGHTS,
    image_size: int = 256,
    data_root: str = "data/imagenet",
):
    return released_recipe(
        "L",
        image_size=image_size,
        ir_config=ir_config,
        ir_state_dict=ir_state_dict,
        data_root=data_root,
    )
