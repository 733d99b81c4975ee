"""GPT-2 medium (24 x 1024, 16 heads) initialised from the text weights in
pretrained/huggingface/gpt2-medium,
class-to-image with classifier-free guidance (label dropout 0.1, scale 1.75);
ImageNet 256 px, DDP.

    uv run train ar/c2i_gpt2_medium_cfg_imagenet_ddp configs/ar/c2i_gpt2_medium_cfg_imagenet_ddp.py \\
        --config-options ir_config::work_dirs/<tokenizer run>/<config>.py \\
        ir_state_dict::work_dirs/<tokenizer run>/checkpoints/latest

The recipe and every option are described in configs/ar/_recipe.py.
"""

from configs.ar._recipe import c2i_recipe


def config(
    ir_config: str | None = None,
    ir_state_dict: str | None = None,
    it_state_dict: str | None = None,
    iters: int = 260_000,
    batch_size: int = 96,
    transformer_size: str = "medium",
    token_file: str | None = None,
):
    return c2i_recipe(
        "gpt2",
        guidance=True,
        ir_config=ir_config,
        ir_state_dict=ir_state_dict,
        it_state_dict=it_state_dict,
        iters=iters,
        batch_size=batch_size,
        transformer_size=transformer_size,
        token_file=token_file,
    )
