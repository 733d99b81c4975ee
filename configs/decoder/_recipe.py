"""Pixel decoders for VQ-KD and Cluster tokens, trained with a VQGAN-family recipe
(configs/decoder/README.md).

The reference composes a decoder run from an image-reconstruction (IR) config, whose losses,
GAN, optimizers, iterations, data, batch and strategy it keeps, and an image-tokenizer (IT)
config, whose tokenizer it freezes in place of the IR config's encoder and quantizer. Here
the IR side is a recipe function (``llamagen_recipe`` of configs/llamagen/_recipe.py, or
taming's ``dd2_aglwg075`` through ``vqgan_recipe`` of configs/vqgan/_recipe.py) that the
config file binds, and the IT side is ``it_config``. A config file is::

    config = partial(decoder_recipe, llamagen_recipe)

and takes these ``--config-options``::

    it_config         the tokenizer: a VQ-KD or Cluster config file, or the resolved config
                      in its run's work dir (configs/vqkd/clip_8192_imagenet_ddp.py)
    it_state_dict     its weights: the run's checkpoint (work_dirs/<run>/checkpoints/iter_N)
    decoder           vqgan (taming's f16 decoder), vqkd (a ViT-B pixel decoder: each token
                      emits a 16x16x3 patch) or vqkd_large (1280 wide, 32 blocks, 16 heads)
    lr, discriminator_lr, batch_size, iters, image_size, data_root, strategy, workers
                      as the bound recipe's options; None (the default) keeps its value

``it_state_dict`` is written into the run's config, so ``--auto-resume`` needs nothing more;
``--load-model-from`` still adds weight files after it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import get_args

from vq.core.configfile import load_config
from vq.core.errors import UserError
from vq.decoders import DecodedTokenizerConfig, FeatureTokenizerConfig, PixelDecoderName
from vq.tokenizers.models.cluster import ClusterConfig
from vq.tokenizers.models.vqkd import VQKDConfig
from vq.train.trainers.decoder import DecoderRunConfig
from vq.train.trainers.vqgan import VQGANRunConfig

TOKENS_PER_SIDE_FACTOR = 16  # every pixel decoder here upsamples its token grid 16x


def feature_tokenizer_of(it_config: str | Path) -> FeatureTokenizerConfig:
    """The tokenizer model config of the VQ-KD or Cluster run config file ``it_config``."""
    run = load_config(it_config)
    model = getattr(run, "model", None)
    if not isinstance(model, VQKDConfig | ClusterConfig):
        raise UserError(
            f"it_config {it_config} is a {type(run).__name__}: a pixel decoder is trained on the "
            "tokens of a VQ-KD or Cluster run; point it_config at one of their config files "
            "(or at the resolved config in the run's work dir)"
        )
    return model


def decoder_run(
    recipe: VQGANRunConfig,
    tokenizer: FeatureTokenizerConfig,
    decoder: str = "vqgan",
    tokenizer_weights: list[Path] | None = None,
) -> DecoderRunConfig:
    """A pixel decoder for ``tokenizer`` (weights: ``tokenizer_weights``) trained with the
    reconstruction ``recipe`` of a VQGAN-family run in place of its autoencoder."""
    if decoder not in get_args(PixelDecoderName):
        raise UserError(
            f"unknown pixel decoder {decoder!r}; choose {', '.join(get_args(PixelDecoderName))}"
        )
    grid_size = recipe.image_size // TOKENS_PER_SIDE_FACTOR
    return DecoderRunConfig(
        model=DecodedTokenizerConfig.preset(tokenizer, decoder, grid_size=grid_size),
        tokenizer_weights=tokenizer_weights or [],
        data=recipe.data,
        reconstruction=recipe.reconstruction,
        gan=recipe.gan,
        optimization=recipe.optimization,
        discriminator_optimization=recipe.discriminator_optimization,
        loop=recipe.loop,
        loader=recipe.loader,
        strategy=recipe.strategy,
    )


def decoder_recipe(
    pixel_recipe: Callable[..., VQGANRunConfig],
    /,
    *,
    it_config: str = "configs/vqkd/clip_8192_imagenet_ddp.py",
    it_state_dict: str | None = None,
    decoder: str = "vqgan",
    lr: float | None = None,
    discriminator_lr: float | None = None,
    batch_size: int | None = None,
    iters: int | None = None,
    image_size: int | None = None,
    data_root: str | None = None,
    strategy: str | None = None,
    workers: int | None = None,
) -> DecoderRunConfig:
    """A pixel decoder on the tokens of ``it_config`` with ``pixel_recipe``'s training
    (module docstring); the options left None keep the recipe's values."""
    options = {
        "lr": lr,
        "discriminator_lr": discriminator_lr,
        "batch_size": batch_size,
        "iters": iters,
        "image_size": image_size,
        "data_root": data_root,
        "strategy": strategy,
        "workers": workers,
    }
    recipe = pixel_recipe(**{k: v for k, v in options.items() if v is not None})
    weights = [Path(it_state_dict)] if it_state_dict else []
    return decoder_run(recipe, feature_tokenizer_of(it_config), decoder, weights)
