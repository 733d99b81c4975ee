"""Trainer of pixel decoders for VQ-KD and Cluster tokens.

A finished VQ-KD or Cluster run gives codes; this run trains a pixel decoder on them with
a reconstruction recipe of the VQGAN family, and the pair becomes one tokenizer
(``DecoderRunConfig.build_tokenizer()``: ``encode`` / ``decode``) for the AR stage::

    uv run train decoder/llamagen/vqkd_clip_8192_imagenet_ddp/llamagen configs/decoder/llamagen.py \\
        --config-options it_config::configs/vqkd/clip_8192_imagenet_ddp.py \\
        --load-model-from work_dirs/vqkd/clip_8192_imagenet_ddp/checkpoints/iter_250000

* The tokenizer comes from ``it_config`` (a VQ-KD or Cluster config file, or a run's
  resolved config) and its weights from ``--load-model-from``, which is required: it is
  frozen (eval mode, no gradients), left out of checkpoints, and so must be given again
  when resuming (``--auto-resume --load-model-from ...``: weights load first, the
  checkpoint then restores the decoder).
* Only ``pre_decode`` and the pixel decoder are in the generator's optimizer; the
  discriminator trains as in the recipe.
* The GAN step is ``VQGANTrainer``'s (one generator forward, a generator step with the
  reconstruction and GAN terms, a discriminator step on the detached reconstruction):
  the recipes are the reference's IR configs (configs/decoder/README.md), LlamaGen's VQGAN
  (``configs/decoder/llamagen.py``) or taming's ``dd2_aglwg075`` (``configs/decoder/vqgan.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from torch import Tensor

from vq.core.configfile import load_config
from vq.core.errors import UserError
from vq.core.logging import LOGGER
from vq.core.loop import Run
from vq.core.tensorfiles import load_weights
from vq.decoders import (
    DecodedTokenizer,
    DecodedTokenizerConfig,
    FeatureTokenizerConfig,
    PixelDecoderName,
)
from vq.tokenizers.models.cluster import ClusterConfig
from vq.tokenizers.models.vqkd import VQKDConfig
from vq.train.trainers.vqgan import (
    GANRunConfig,
    Generator,
    UsedWeight,
    VQGANRunConfig,
    VQGANTrainer,
)


class DecoderRunConfig(GANRunConfig):
    """Generator: ``pre_decode`` and the pixel decoder (the tokenizer is frozen)."""

    trainer: Literal["decoder"] = "decoder"
    model: DecodedTokenizerConfig

    def build_tokenizer(self) -> DecodedTokenizer:
        """The complete tokenizer; its weights are the tokenizer run's checkpoint plus this
        run's (``checkpoints/iter_N/models/model.safetensors`` of each)."""
        return DecodedTokenizer(self.model)


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
    recipe: VQGANRunConfig, tokenizer: FeatureTokenizerConfig, decoder: PixelDecoderName = "vqgan"
) -> DecoderRunConfig:
    """A pixel decoder for ``tokenizer`` trained with the reconstruction ``recipe`` of a
    VQGAN-family run (losses, GAN, optimizers, iterations, data, batch, strategy) in place of
    its autoencoder, as the reference composes its IR and IT configs."""
    if decoder not in get_args(PixelDecoderName):
        raise UserError(
            f"unknown pixel decoder {decoder!r}; choose {', '.join(get_args(PixelDecoderName))}"
        )
    return DecoderRunConfig(
        model=DecodedTokenizerConfig.preset(tokenizer, decoder, grid_size=recipe.image_size // 16),
        data=recipe.data,
        reconstruction=recipe.reconstruction,
        gan=recipe.gan,
        optimization=recipe.optimization,
        discriminator_optimization=recipe.discriminator_optimization,
        loop=recipe.loop,
        loader=recipe.loader,
        strategy=recipe.strategy,
    )


class DecoderTrainer:
    def __init__(self, config: DecoderRunConfig, run: Run) -> None:
        if not run.load_model_from:
            raise UserError(
                "decoder: the frozen tokenizer needs its weights: pass --load-model-from "
                "work_dirs/<tokenizer run>/checkpoints/iter_N (again when resuming: decoder "
                "checkpoints leave the tokenizer out)"
            )
        for path in run.load_model_from:
            if not Path(path).exists():
                raise UserError(f"--load-model-from {path}: no such file or checkpoint directory")
        # The tokenizer first: a missing teacher file (Cluster) fails before anything else.
        decoded = DecodedTokenizer(config.model)
        decoded.check_image_size(config.image_size)
        self.decoded = decoded  # unwrapped
        self._load_tokenizer(decoded, run.load_model_from)
        last_layer = UsedWeight(decoded.last_layer)
        model = run.prepare("model", decoded, exclude=decoded.frozen_prefixes, load=False)
        opt = run.optimization(
            "model", model, list(decoded.trainable_parameters()), config.optimization
        )
        self.model = model
        # the GAN steps of VQGAN training, on the pixel decoder only
        self.gan = VQGANTrainer(config, run, Generator(model, opt, last_layer))
        self.dataset = self.gan.dataset
        self.collate = self.gan.collate

    @staticmethod
    def _load_tokenizer(decoded: DecodedTokenizer, files: list[Path]) -> None:
        """``--load-model-from`` into the whole model (a decoder checkpoint may come too);
        every tokenizer weight must be in the files."""
        report = load_weights(decoded, files)
        shown = " ".join(str(f) for f in files)
        LOGGER.info("--load-model-from into model: %s", report.summary())
        frozen = [
            k
            for k in report.missing + report.mismatched
            if k.split(".", 1)[0] in decoded.frozen_prefixes
        ]
        if frozen:
            raise UserError(
                f"decoder: --load-model-from {shown} does not hold the tokenizer of the config "
                f"({len(frozen)} of its tensors missing or of another shape, e.g. "
                f"{', '.join(frozen[:3])}); give the checkpoint of the tokenizer run it_config "
                "names"
            )

    def step(self, batch: dict[str, Any], iteration: int) -> dict[str, Tensor | float]:
        return self.gan.step(batch, iteration)

    def visuals(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        return self.gan.visuals(batch)
