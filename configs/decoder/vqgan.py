"""A pixel decoder for VQ-KD or Cluster tokens with taming's ``dd2_aglwg075`` VQGAN recipe
(that of ``configs/vqgan/8192_dd2_aglwg075_imagenet_ddp.py``, whose codebook the decoder run
replaces by the frozen tokenizer).

The tokenizer of ``it_config`` is frozen; its weights come from ``it_state_dict``.
``pre_decode`` (1x1 conv D -> 256) and the taming f16 decoder (``decoder::vqkd`` /
``decoder::vqkd_large``: a ViT pixel decoder) learn with L1 + LPIPS + hinge GAN from the
first iteration, the adaptive GAN weight with gain 0.75, PatchGAN depth 2, Adam 5.4e-5 /
4.32e-4 (0.5, 0.9), 260k iterations at a global batch of 96 on ImageNet at 256 px::

    uv run train decoder/vqgan/vqkd_clip_8192_imagenet_ddp/vqgan configs/decoder/vqgan.py \\
        --config-options it_config::configs/vqkd/clip_8192_imagenet_ddp.py \\
        it_state_dict::work_dirs/vqkd/clip_8192_imagenet_ddp/checkpoints/iter_250000 --auto-resume

The options: ``decoder_recipe`` in configs/decoder/_recipe.py; the training values:
``vqgan_recipe`` in configs/vqgan/_recipe.py.
"""

from functools import partial

from configs.decoder._recipe import decoder_recipe
from configs.vqgan._recipe import vqgan_recipe

config = partial(
    decoder_recipe, partial(vqgan_recipe, "vqgan", "patchgan_depth_2", 0.75, num_codes=8192)
)
