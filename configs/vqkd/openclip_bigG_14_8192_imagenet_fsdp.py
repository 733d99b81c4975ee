"""VQ-KD distilling OpenCLIP ViT-bigG/14 LAION-2B (1280-d projected, 16x16 resized to
14x14) into 8192 x 32 codes with FSDP: the frozen ~1.8B-parameter teacher stays whole on
every rank, the tokenizer's parameters, gradients and AdamW states are sharded (sharded
checkpoints, see ``consolidate``). ImageNet at 224 px ('default' augmentation), batch 512
(global), 250k iterations.

    uv run train vqkd/openclip_bigG_14_8192_imagenet_fsdp configs/vqkd/openclip_bigG_14_8192_imagenet_fsdp.py --autocast --auto-resume

Options, e.g. ``--config-options num_codes:16384 lr:1e-4 data_root::/datasets/imagenet``,
and every value of the recipe: ``vqkd_recipe`` in configs/vqkd/_recipe.py.
"""

from functools import partial

from configs.vqkd._recipe import vqkd_recipe

config = partial(
    vqkd_recipe,
    "openclip_bigG_14",
    num_codes=8192,
    strategy="fsdp",
    teacher_weights="pretrained/teachers/openclip_bigG_14.safetensors",
)
