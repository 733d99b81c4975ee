"""The contract of a tokenizer run: what later stages may ask of its config.

Every run that trains a tokenizer (VQGAN, CVQ-VAE, FSQ and LlamaGen's VQGAN; VQ-KD;
Cluster; a pixel decoder on VQ-KD or Cluster tokens) has a config deriving from
:class:`TokenizerRunConfig`. Evaluation (``val``/``test``), ``export`` and the AR stage's
frozen tokenizer read a run only through it:

* ``build_tokenizer()``: the untrained eval-time tokenizer (``encode``, ``decode``,
  ``num_codes``, ``grid_size``) whose weights the run's checkpoints hold;
* ``image_size``: the square size of the images it trained on;
* ``frozen_weights``: weight files of frozen parts that the run's checkpoints leave out and
  its config names (a pixel decoder's tokenizer: the ``it_state_dict`` option). Whoever
  loads the run's checkpoints loads these first.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

from torch import nn

from vq.core.errors import UserError
from vq.core.loop import RunConfig
from vq.train.data import DatasetConfig

# What every tokenizer returned by ``build_tokenizer()`` offers (docs/pipeline.md).
TOKENIZER_API = ("encode", "decode", "num_codes", "grid_size")


class TokenizerRunConfig(RunConfig):
    """A run config whose run trains a tokenizer; see the module docstring."""

    data: DatasetConfig

    @property
    def image_size(self) -> int:
        """The square image size of the training data."""
        return self.data.image_size

    @property
    def frozen_weights(self) -> list[Path]:
        """Weight files of frozen parts the checkpoints leave out (none by default)."""
        return []

    @abstractmethod
    def build_tokenizer(self) -> nn.Module:
        """The tokenizer the run trains, untrained (weights: the run's checkpoints)."""


def tokenizer_run(config: Any, source: Path | str, use: str) -> TokenizerRunConfig:
    """``config`` (loaded from ``source``) as a tokenizer run, or one ``UserError`` naming
    ``use`` (what needed a tokenizer run: "val/test", "export", "ir_config")."""
    if not isinstance(config, TokenizerRunConfig):
        kind = getattr(config, "trainer", type(config).__name__)
        raise UserError(
            f"{use}: {source} is a {kind!r} run, not a tokenizer run (VQGAN, CVQ-VAE, FSQ, "
            "VQ-KD, Cluster or a pixel decoder); point it at the config of one"
        )
    return config


def build_checked_tokenizer(run: TokenizerRunConfig, source: Path | str) -> nn.Module:
    """``run.build_tokenizer()``, refusing a module without the tokenizer API."""
    tokenizer = run.build_tokenizer()
    missing = [name for name in TOKENIZER_API if not hasattr(tokenizer, name)]
    if missing:
        raise UserError(
            f"{source}: build_tokenizer() returned a {type(tokenizer).__name__} without "
            f"{', '.join(missing)}"
        )
    return tokenizer
