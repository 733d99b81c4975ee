"""LlamaGen's released GPT-XL (36 x 1280, 20 heads, ~775M) on its ds16 VQGAN, class-to-image
with guidance 1.75: sampling and testing the weights of ``uv run convert llamagen-gpt``::

    uv run sample llamagen/c2i_XL_samples configs/llamagen/c2i_XL_released.py \\
        --load-model-from generators/llamagen_c2i_XL_384/model.safetensors

For ``c2i_XL_384.pt`` (384 px, the default; LlamaGen released no 256 px XL). ``image_size``
must be the checkpoint's (its grid is what the rotary embedding encodes). The options are
described in configs/llamagen/_released.py.
"""

from configs.llamagen._released import TOKENIZER_CONFIG, TOKENIZER_WEIGHTS, released_recipe


def config(
    ir_config: str = TOKENIZER_CONFIG,
    ir_state_dict: str = TOKENIZER_WEIGHTS,
    image_size: int = 384,
    data_root: str = "data/imagenet",
):
    return released_recipe(
        "XL",
        image_size=image_size,
        ir_config=ir_config,
        ir_state_dict=ir_state_dict,
        data_root=data_root,
    )
