"""Typed config of a proposal network and the one function that builds it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from vq.core.config import Config
from vq.generators.gpt2 import GPT2, GPT2Config, load_hf_gpt2
from vq.generators.gpt2 import PRESETS as GPT2_PRESETS
from vq.generators.llama import PRESETS as LLAMA_PRESETS
from vq.generators.llama import Llama, LlamaConfig
from vq.generators.network import ProposalNetwork
from vq.generators.sequence import SequenceLayout

_PRESETS = {"llama": LLAMA_PRESETS, "gpt2": GPT2_PRESETS}
_FIELDS = {
    "llama": set(LlamaConfig.__dataclass_fields__) - {"vocab_size"},
    "gpt2": set(GPT2Config.__dataclass_fields__) - {"vocab_size"},
}
_TEXT_FIELDS = {"llama": {"rope"}, "gpt2": set()}  # overrides whose values are strings


class ProposalNetworkConfig(Config):
    """Which transformer, its size, and how the class label enters the sequence.

    ``overrides`` changes single fields of the preset (e.g. ``{"depth": 4}``); the keys are
    the fields of ``LlamaConfig`` / ``GPT2Config``, the values numbers except ``rope``
    (``{"rope": "2d", "grid_width": 16}``: LlamaGen's 2D rotary embedding). ``null_class``
    adds the unconditional id to the vocabulary that classifier-free guidance needs, and
    ``label_dropout`` is the training probability of replacing a class by it.
    ``pretrained`` (gpt2 only) is a local Hugging Face GPT-2 directory whose text weights
    initialise the model (the reference starts from ``gpt2-medium``).
    """

    architecture: Literal["llama", "gpt2"] = "llama"
    preset: str = "medium"
    overrides: dict[str, int | float | str] = Field(default_factory=dict)
    null_class: bool = True
    label_dropout: float = 0.1
    pretrained: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> ProposalNetworkConfig:
        presets = _PRESETS[self.architecture]
        if self.preset not in presets:
            raise ValueError(
                f"unknown {self.architecture} preset {self.preset!r}; choose from {sorted(presets)}"
            )
        unknown = set(self.overrides) - _FIELDS[self.architecture]
        if unknown:
            raise ValueError(
                f"overrides {sorted(unknown)} are not {self.architecture} fields; "
                f"choose from {sorted(_FIELDS[self.architecture])}"
            )
        text = {k for k, v in self.overrides.items() if isinstance(v, str)}
        if text - _TEXT_FIELDS[self.architecture]:
            raise ValueError(
                f"overrides {sorted(text - _TEXT_FIELDS[self.architecture])} need numbers"
            )
        if self.architecture == "llama":  # the field checks of LlamaConfig, before any build
            LlamaConfig(vocab_size=1, **{**presets[self.preset], **self.overrides})
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1), got {self.label_dropout}")
        if self.label_dropout > 0 and not self.null_class:
            raise ValueError("label_dropout > 0 needs null_class=True (the id it drops to)")
        if self.pretrained is not None and self.architecture != "gpt2":
            raise ValueError("pretrained weights are supported for architecture 'gpt2' only")
        return self

    def layout(self, codebook_size: int, num_classes: int) -> SequenceLayout:
        return SequenceLayout(num_classes, codebook_size, self.null_class)


def build_proposal_network(
    cfg: ProposalNetworkConfig, codebook_size: int, num_classes: int
) -> ProposalNetwork:
    """The model of ``cfg`` with a vocabulary for ``num_classes`` (+ null) and the codebook."""
    vocab_size = cfg.layout(codebook_size, num_classes).vocab_size
    if cfg.architecture == "llama":
        return Llama.from_preset(cfg.preset, vocab_size, **cfg.overrides)
    model = GPT2.from_preset(cfg.preset, vocab_size, **cfg.overrides)
    if cfg.pretrained is not None:
        load_hf_gpt2(model, cfg.pretrained)
    return model
