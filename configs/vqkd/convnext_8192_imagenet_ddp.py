"""VQ-KD distilling torchvision ConvNeXt-B (1024-d stage-4 map, 7x7 upsampled to 14x14)
into 8192 x 32 codes: ImageNet at 224 px ('default' augmentation), batch 512 (global),
250k iterations, DDP.
"""

from vq.train.data import ImageNetConfig
from vq.train.trainers.vqkd import vqkd_recipe


def config(iters: int = 250_000, root: str = "data/imagenet"):
    return vqkd_recipe(
        "convnext",
        8192,
        data=ImageNetConfig(root=root, image_size=224, augmentation="default"),
        iters=iters,
    )
