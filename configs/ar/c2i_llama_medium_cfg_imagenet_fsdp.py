"""LLaMA medium (LlamaGen GPT-L: 24 x 1024, 16 heads, ~343M parameters) from scratch,
class-to-image with classifier-free guidance (label dropout 0.1, scale 1.75);
ImageNet 256 px, FSDP (one shard unit per transformer block).

    uv run train ar/c2i_llama_medium_cfg_imagenet_fsdp configs/ar/c2i_llama_medium_cfg_imagenet_fsdp.py \\
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
        "llama",
        guidance=True,
        fsdp=True,
        ir_config=ir_config,
        ir_state_dict=ir_state_dict,
        it_state_dict=it_state_dict,
        iters=iters,
        batch_size=batch_size,
        transformer_size=transformer_size,
        token_file=token_file,
    )
