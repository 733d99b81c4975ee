"""A tiny pixel decoder on the tokens of the tiny VQ-KD of ``configs/demo/vqkd_photos.py``.

The two-command pipeline on the embedded photos (CPU, a few minutes in all)::

    uv run train demo/vqkd configs/demo/vqkd_photos.py
    uv run train demo/decoder configs/demo/decoder_photos.py \\
        --config-options it_config::work_dirs/demo/vqkd/vqkd_photos.py \\
        it_state_dict::work_dirs/demo/vqkd/checkpoints/latest

``it_config`` names the VQ-KD run's resolved config (or the demo file itself, if the run
kept its defaults); the frozen tokenizer's weights come from its checkpoint,
``it_state_dict`` (or ``--load-model-from``). The 32 px
photos give 4x4 tokens of 8 dims; a 1x1 conv to 32 channels and a small VQGAN decoder
(three 2x upsamplings) paint them back, trained with L1 and a PatchGAN of depth 2 that joins
halfway. ``decoder::vit`` swaps in a small ViT pixel decoder (an 8x8 patch per token).
LPIPS is off so that nothing has to be downloaded (``lpips:1.0`` turns it on with the files
of ``pretrained/lpips/``). The image grids (photos / reconstructions from the frozen tokens)
go to ``work_dirs/demo/decoder/visuals/``.
"""

from pathlib import Path

from configs.decoder._recipe import feature_tokenizer_of
from vq.core.data import LoaderConfig
from vq.core.errors import UserError
from vq.core.loop import LoopConfig
from vq.core.optim import OptimizationConfig, OptimizerConfig
from vq.decoders import DecodedTokenizerConfig
from vq.tokenizers.autoencoders.vqgan import VQGANDecoderConfig
from vq.tokenizers.connectors import ConnectorConfig
from vq.tokenizers.discriminators import PatchGANConfig
from vq.tokenizers.losses import ReconstructionLossConfig
from vq.tokenizers.vit import ViTConfig
from vq.train.data import PhotosConfig
from vq.train.gan_step import GANConfig
from vq.train.trainers.decoder import DecoderRunConfig

UPSAMPLE = 8  # 32 px / 4x4 tokens


def config(
    it_config: str = "configs/demo/vqkd_photos.py",
    it_state_dict: str | None = None,
    decoder: str = "conv",
    iters: int = 300,
    image_size: int = 32,
    batch_size: int = 16,
    discriminator_start: int = 150,
    lpips: float = 0.0,
    lr: float = 2e-3,
    workers: int = 0,
    checkpoint_interval: int = 100,
) -> DecoderRunConfig:
    tokenizer = feature_tokenizer_of(it_config)
    dim = tokenizer.quantizer.dim
    if decoder == "conv":
        width = 32
        model = DecodedTokenizerConfig(
            tokenizer=tokenizer,
            pre_decode=ConnectorConfig(channels=(dim, width)),
            decoder=VQGANDecoderConfig(
                in_channels=width, width=width, width_mults=(2, 2, 1, 1), depth=1, norm_groups=8
            ),
        )
    elif decoder == "vit":
        model = DecodedTokenizerConfig(
            tokenizer=tokenizer,
            pre_decode=ConnectorConfig(kind="identity", channels=(dim,)),
            decoder=ViTConfig(
                grid_size=image_size // UPSAMPLE,
                patch_size=1,
                in_chans=dim,
                embed_dim=64,
                depth=2,
                num_heads=2,
                out_dim=3,
                out_patch_size=UPSAMPLE,
            ),
        )
    else:
        raise UserError(f"decoder {decoder!r}: choose conv or vit")
    adam = OptimizerConfig(lr=lr, betas=(0.5, 0.9))
    return DecoderRunConfig(
        model=model,
        tokenizer_weights=[Path(it_state_dict)] if it_state_dict else [],
        data=PhotosConfig(image_size=image_size, augmentation="strong"),
        reconstruction=ReconstructionLossConfig(l1_weight=1.0, lpips_weight=lpips),
        gan=GANConfig(
            discriminator=PatchGANConfig(depth=2, width=32),
            discriminator_start=discriminator_start,
        ),
        optimization=OptimizationConfig(optimizer=adam),
        discriminator_optimization=OptimizationConfig(optimizer=adam),
        loop=LoopConfig(
            iters=iters,
            log_interval=25,
            visual_interval=100,
            checkpoint_interval=checkpoint_interval,
        ),
        loader=LoaderConfig(batch_size=batch_size, workers=workers),
    )
