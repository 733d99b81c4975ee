"""The large ViT pixel decoder (``decoder/vqkd_large.py``: 32 blocks, 1280 wide, 16 heads)
with FSDP2: the model's parameters, gradients and Adam states are sharded over the ranks,
each ViT block its own shard unit (sharded checkpoints, see ``consolidate``). LlamaGen's
VQGAN recipe otherwise, as ``vqkd_large.py``.

    uv run train decoder/vqkd_large_fsdp/vqkd_clip_8192_imagenet_ddp configs/decoder/vqkd_large_fsdp.py \\
        --config-options it_config::configs/vqkd/clip_8192_imagenet_ddp.py \\
        it_state_dict::work_dirs/vqkd/clip_8192_imagenet_ddp/checkpoints/iter_250000 --auto-resume

The options: ``decoder_recipe`` in configs/decoder/_recipe.py; the training values:
``llamagen_recipe`` in configs/llamagen/_recipe.py.
"""

from functools import partial

from configs.decoder._recipe import decoder_recipe
from configs.llamagen._recipe import llamagen_recipe

config = partial(decoder_recipe, llamagen_recipe, decoder="vqkd_large", strategy="fsdp")
