"""A ViT pixel decoder for VQ-KD or Cluster tokens with LlamaGen's VQGAN recipe: the
paper's ``decoder/llamagen.py`` with ``decoder::vqkd``.

The tokenizer of ``it_config`` is frozen; its weights come from ``it_state_dict``. The
decoder is VQ-KD's ViT-B (12 blocks of 768, 12 heads) read one token per code, each output
token a 16x16x3 pixel patch (identity connector in front). It learns with L2 + LPIPS, GAN
weights 0.5 without the adaptive weight, PatchGAN depth 3 from iteration 20k, Adam 1e-4
(0.9, 0.95), 400k iterations at a global batch of 128 on ImageNet at 256 px::

    uv run train decoder/vqkd/vqkd_clip_8192_imagenet_ddp configs/decoder/vqkd.py \\
        --config-options it_config::configs/vqkd/clip_8192_imagenet_ddp.py \\
        it_state_dict::work_dirs/vqkd/clip_8192_imagenet_ddp/checkpoints/iter_250000 --auto-resume

The options: ``decoder_recipe`` in configs/decoder/_recipe.py; the training values:
``llamagen_recipe`` in configs/llamagen/_recipe.py.
"""

from functools import partial

from configs.decoder._recipe import decoder_recipe
from configs.llamagen._recipe import llamagen_recipe

config = partial(decoder_recipe, llamagen_recipe, decoder="vqkd")
