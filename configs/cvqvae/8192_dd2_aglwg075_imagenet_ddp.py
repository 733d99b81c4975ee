"""CVQ-VAE: the main VQGAN baseline (8192 x 256, dd2, aglwg075) plus online re-initialisation
of dead codes towards their nearest batch features (running usage EMA 0.99), searched by
the cosine distance (the reference resolved to L2: see ``vector_quantizer`` in the recipe).

    uv run train cvqvae/8192_dd2_aglwg075_imagenet_ddp configs/cvqvae/8192_dd2_aglwg075_imagenet_ddp.py --autocast --auto-resume

Options, e.g. ``--config-options num_codes:1024 lr:1e-4 data_root::/datasets/imagenet``,
and every value of the recipe: ``vqgan_recipe`` in configs/vqgan/_recipe.py.
"""

from functools import partial

from configs.vqgan._recipe import vqgan_recipe

config = partial(vqgan_recipe, "cvqvae", "patchgan_depth_2", 0.75, num_codes=8192)
