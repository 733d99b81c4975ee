"""VQ-KD distilling MAE ViT-B/16 (768-d patch tokens) into 8192 x 32 codes: ImageNet at 224
px ('default' augmentation), batch 512 (global), 250k iterations, DDP.
"""

from vq.train.data import ImageNetConfig
from vq.train.trainers.vqkd import vqkd_recipe


def config(iters: int = 250_000, root: str = "data/imagenet"):
    return vqkd_recipe(
        "mae",
        8192,
        data=ImageNetConfig(root=root, image_size=224, augmentation="default"),
        iters=iters,
    )
