"""VQ-KD distilling OpenAI CLIP ViT-B/16 (512-d projected patch tokens) into 8192 x 32
codes: ImageNet at 224 px ('default' augmentation), batch 512 (global), 250k iterations,
FSDP.
"""

from vq.core.parallel import StrategyConfig
from vq.train.data import ImageNetConfig
from vq.train.trainers.vqkd import vqkd_recipe


def config(iters: int = 250_000, root: str = "data/imagenet"):
    return vqkd_recipe(
        "clip",
        8192,
        data=ImageNetConfig(root=root, image_size=224, augmentation="default"),
        iters=iters,
        strategy=StrategyConfig(kind="fsdp"),
    )
