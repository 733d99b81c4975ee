"""Cluster: 8192 codes fitted to the frozen patch features of supervised torchvision
ViT-B/16 (768-d, without the reference's off-by-one) at 256 px (16x16 tokens); ImageNet
256 px ('strong' augmentation), batch 256 (global), 100k iterations, DDP.
"""

from vq.train.data import ImageNetConfig
from vq.train.trainers.cluster import cluster_recipe


def config(iters: int = 100_000, root: str = "data/imagenet"):
    return cluster_recipe(
        "vit",
        8192,
        data=ImageNetConfig(root=root, image_size=256, augmentation="strong"),
        iters=iters,
    )
