"""Typed configs of the proposal networks and the functions that build them.

``ProposalNetworkConfig`` / ``build_proposal_network``: the autoregressive networks (LLaMA,
GPT-2), which all offer ``network.ProposalNetwork``. ``MaskedNetworkConfig`` /
``build_masked_network``: the non-autoregressive bidirectional network (``maskgit.MaskGIT``,
``masking.MaskedTokenNetwork``). They are two configs, not one with a third architecture,
because the two kinds share no interface: a masked network is called with classes and a
masked grid, needs the grid size to build and has its own ids (mask token, separate class
table), and has no pretrained weights or optional null class; one config would make the AR
builder return a union that every AR caller has to narrow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from vq.core.config import Config
from vq.generators.gpt2 import GPT2, GPT2Config, load_hf_gpt2
from vq.generators.gpt2 import PRESETS as GPT2_PRESETS
from vq.generators.llama import PRESETS as LLAMA_PRESETS
from vq.generators.llama import Llama, LlamaConfig
from vq.generators.maskgit import PRESETS as MASKGIT_PRESETS
from vq.generators.maskgit import MaskGIT, MaskGITConfig
from vq.generators.network import ProposalNetwork
from vq.generators.sequence import SequenceLayout

_PRESETS = {"llama": LLAMA_PRESETS, "gpt2": GPT2_PRESETS}
_FIELDS = {
    "llama": set(LlamaConfig.__dataclass_fields__) - {"vocab_size"},
    "gpt2": set(GPT2Config.__dataclass_fields__) - {"vocab_size"},
}
_TEXT_FIELDS = {"llama": {"rope"}, "gpt2": set()}  # overrides whose values are strings


def _check_preset(
    architecture: str,
    presets: dict[str, dict[str, int]],
    fields: set[str],
    cfg: ProposalNetworkConfig | MaskedNetworkConfig,
) -> None:
    """A known preset, and overrides that are fields of the architecture's config."""
    if cfg.preset not in presets:
        raise ValueError(
            f"unknown {architecture} preset {cfg.preset!r}; choose from {sorted(presets)}"
        )
    unknown = set(cfg.overrides) - fields
    if unknown:
        raise ValueError(
            f"overrides {sorted(unknown)} are not {architecture} fields; "
            f"choose from {sorted(fields)}"
        )


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
        _check_preset(self.architecture, presets, _FIELDS[self.architecture], self)
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


_MASKGIT_SIZES = {"codebook_size", "num_classes", "grid"}  # given by the builder, not the config
_MASKGIT_FIELDS = set(MaskGITConfig.__dataclass_fields__) - _MASKGIT_SIZES


class MaskedNetworkConfig(Config):
    """The bidirectional MaskGIT network's size, and its training-time label dropout.

    ``preset`` is a size of ``maskgit.PRESETS`` (the AR sizes), ``overrides`` changes single
    fields of ``MaskGITConfig`` (``depth``, ``width``, ``heads``, ``ffn_hidden``,
    ``norm_eps``, ``dropout``). The codebook size, number of classes and grid come from the
    tokenizer run and the data, given to ``build_masked_network``. The null class is always
    there; ``label_dropout`` is the probability of training a sample as unconditional
    (``masking.mask_batch``), which classifier-free guidance at sampling time relies on.
    """

    preset: str = "medium"
    overrides: dict[str, int | float] = Field(default_factory=dict)
    label_dropout: float = 0.1

    @model_validator(mode="after")
    def _check(self) -> MaskedNetworkConfig:
        _check_preset("maskgit", MASKGIT_PRESETS, _MASKGIT_FIELDS, self)
        # the field checks of MaskGITConfig, before any build
        MaskGITConfig(1, 1, (1, 1), **{**MASKGIT_PRESETS[self.preset], **self.overrides})
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1), got {self.label_dropout}")
        return self


def build_masked_network(
    cfg: MaskedNetworkConfig, codebook_size: int, num_classes: int, grid: tuple[int, int]
) -> MaskGIT:
    """The MaskGIT network of ``cfg`` for ``num_classes`` (+ null), the codebook (+ mask
    token) and the tokenizer's (h, w) token grid."""
    return MaskGIT.from_preset(cfg.preset, codebook_size, num_classes, grid, **cfg.overrides)
