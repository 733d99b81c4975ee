"""Trainer of pixel decoders for VQ-KD and Cluster tokens.

A finished VQ-KD or Cluster run gives codes; this run trains a pixel decoder on them with
a reconstruction recipe of the VQGAN family, and the pair becomes one tokenizer
(``DecoderRunConfig.build_tokenizer()``: ``encode`` / ``decode``) for the AR stage::

    uv run train decoder/llamagen/vqkd_clip_8192_imagenet_ddp/llamagen configs/decoder/llamagen.py \\
        --config-options it_config::configs/vqkd/clip_8192_imagenet_ddp.py \\
        it_state_dict::work_dirs/vqkd/clip_8192_imagenet_ddp/checkpoints/iter_250000

* The tokenizer comes from ``it_config`` (a VQ-KD or Cluster config file, or a run's
  resolved config) and its weights from ``tokenizer_weights`` (the configs' option
  ``it_state_dict``), then ``--load-model-from`` (later files win); one of them is required.
  The tokenizer is frozen (eval mode, no gradients) and left out of checkpoints; since the
  config names its weights, ``--auto-resume`` finds them again by itself.
* Only ``pre_decode`` and the pixel decoder are in the generator's optimizer; the
  discriminator trains as in the recipe.
* The GAN step is :class:`vq.train.gan_step.GANStep` (one generator forward, a generator
  step with the reconstruction and GAN terms, a discriminator step on the detached
  reconstruction). The recipes are in ``configs/decoder/_recipe.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from torch import Tensor

from vq.core.errors import UserError
from vq.core.logging import LOGGER
from vq.core.loop import Run
from vq.core.tensorfiles import load_weights
from vq.decoders import DecodedTokenizer, DecodedTokenizerConfig
from vq.train.data import build_dataset, collate
from vq.train.gan_step import GANRunConfig, GANStep, Generator, UsedWeight


class DecoderRunConfig(GANRunConfig):
    """Generator: ``pre_decode`` and the pixel decoder (the tokenizer is frozen)."""

    trainer: Literal["decoder"] = "decoder"
    model: DecodedTokenizerConfig
    tokenizer_weights: list[Path] = Field(default_factory=list)
    """Checkpoints or weight files of the frozen tokenizer (its run's ``checkpoints/iter_N``),
    loaded before ``--load-model-from``; later files win."""

    @property
    def frozen_weights(self) -> list[Path]:
        return list(self.tokenizer_weights)

    def build_tokenizer(self) -> DecodedTokenizer:
        """The complete tokenizer; its weights are the tokenizer run's checkpoint plus this
        run's (``checkpoints/iter_N/models/model.safetensors`` of each)."""
        return DecodedTokenizer(self.model)


def tokenizer_weight_files(config: DecoderRunConfig, run: Run) -> list[Path]:
    """The files the frozen tokenizer loads: the config's, then ``--load-model-from``."""
    if not config.tokenizer_weights and not run.load_model_from:
        raise UserError(
            "decoder: the frozen tokenizer needs its weights: give --config-options "
            "it_state_dict::work_dirs/<tokenizer run>/checkpoints/iter_N (or --load-model-from "
            "the same path)"
        )
    for path in config.tokenizer_weights:
        if not Path(path).exists():
            raise UserError(f"it_state_dict {path}: no such file or checkpoint directory")
    for path in run.load_model_from:
        if not Path(path).exists():
            raise UserError(f"--load-model-from {path}: no such file or checkpoint directory")
    return [*config.tokenizer_weights, *run.load_model_from]


class DecoderTrainer:
    def __init__(self, config: DecoderRunConfig, run: Run) -> None:
        files = tokenizer_weight_files(config, run)
        # The tokenizer first: a missing teacher file (Cluster) fails before anything else.
        decoded = DecodedTokenizer(config.model)
        decoded.check_image_size(config.image_size)
        self.decoded = decoded  # unwrapped
        self._load_tokenizer(decoded, files)
        last_layer = UsedWeight(decoded.last_layer)
        self.model = run.prepare("model", decoded, exclude=decoded.frozen_prefixes, load=False)
        opt = run.optimization(
            "model", self.model, list(decoded.trainable_parameters()), config.optimization
        )
        # the GAN step of VQGAN training, on the pixel decoder only
        self.gan = GANStep(config, run, Generator(self.model, opt, last_layer))
        self.dataset = build_dataset(config.data, "train")
        self.collate = collate

    @staticmethod
    def _load_tokenizer(decoded: DecodedTokenizer, files: list[Path]) -> None:
        """``files`` into the whole model (a decoder checkpoint may come too); every
        tokenizer weight must be in them."""
        report = load_weights(decoded, files)
        shown = " ".join(str(f) for f in files)
        LOGGER.info("tokenizer weights into model: %s", report.summary())
        frozen = [
            k
            for k in report.missing + report.mismatched
            if k.split(".", 1)[0] in decoded.frozen_prefixes
        ]
        if frozen:
            raise UserError(
                f"decoder: {shown} does not hold the tokenizer of the config "
                f"({len(frozen)} of its tensors missing or of another shape, e.g. "
                f"{', '.join(frozen[:3])}); give the checkpoint of the tokenizer run it_config "
                "names"
            )

    def step(self, batch: dict[str, Any], iteration: int) -> dict[str, Tensor | float]:
        return self.gan.step(batch, iteration)

    def visuals(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        return self.gan.visuals(batch)
