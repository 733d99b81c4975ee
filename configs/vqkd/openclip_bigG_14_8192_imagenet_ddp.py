"""VQ-KD distilling OpenCLIP ViT-bigG/14 LAION-2B (1280-d projected, 16x16 resized to
14x14) into 8192 x 32 codes: ImageNet at 224 px ('default' augmentation), batch 512
(global), 250k iterations, DDP.
"""

from vq.train.data import ImageNetConfig
from vq.train.trainers.vqkd import vqkd_recipe


def config(iters: int = 250_000, root: str = "data/imagenet"):
    return vqkd_recipe(
        "openclip_bigG_14",
        8192,
        data=ImageNetConfig(root=root, image_size=224, augmentation="default"),
        iters=iters,
    )
