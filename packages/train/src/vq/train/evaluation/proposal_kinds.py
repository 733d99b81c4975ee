"""What the generator pass and ``sample`` do differently for AR and NAR proposal networks.

The pass itself (``generator_pass``: val images, tokens, PNGs, gFID/IS per guidance scale,
metrics.json) is the same for both; a *kind* says how its network is built, what it
predicts of a val image's own tokens, and how it draws a new grid:

====================  ==========================================  ==========================
                      AR (``ARRunConfig``)                        NAR (``NARRunConfig``)
====================  ==========================================  ==========================
predictions           teacher-forced next-token ``loss``,         ``loss`` and argmax
                      argmax ``top1_accuracy``, sampled           ``masked_accuracy`` at a
                      ``accuracy`` (the reference's metric)       cosine-schedule mask
drawing               ``generate`` (h*w steps, KV cache)          ``parallel_decode``
                                                                  (``num_steps`` steps)
====================  ==========================================  ==========================

The NAR mask of a val image is drawn as in training (a cosine-schedule share of the cells,
chosen uniformly) from that image's own generator, so the loss is the training objective
measured without label dropout, and depends on the seed alone, not on the batch size or
the number of processes. Both kinds use the true class of each image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from vq.core.compiling import inference_mode
from vq.generators import (
    Generators,
    masked_token_accuracy,
    masked_token_loss,
    next_token_loss,
    random_mask,
    sampled_token_accuracy,
    token_accuracy,
)
from vq.train.proposal import ProposalRunConfig, SamplingConfig, TokenSpace
from vq.train.trainers.ar import ARRunConfig, build_network, sample_tokens
from vq.train.trainers.nar import (
    MaskedSamplingConfig,
    NARRunConfig,
    build_masked,
    decode_tokens,
)


class ProposalKind(Protocol):
    label: str
    """How messages name a run of this kind: ``AR`` or ``NAR``."""
    prediction_metrics: tuple[str, ...]
    """Per-image numbers of ``predictions``, averaged over the val split."""
    compile: bool
    """``--compile``: AR runs compile the one-token step, NAR runs the network."""

    def build(self, config: Any, space: TokenSpace, device: torch.device) -> nn.Module:
        """The untrained network on ``device`` in eval mode; checkpoints' weights are loaded
        into it."""
        ...

    def predictions(
        self,
        network: nn.Module,
        config: Any,
        space: TokenSpace,
        classes: Tensor,
        ids: Tensor,
        generators: list[torch.Generator],
    ) -> dict[str, Tensor]:
        """Per image (B,): the network's numbers on its own codes ``ids`` (B, h, w) given its
        class (B,); ``generators`` (one per image) for whatever they draw."""
        ...

    def draw(
        self,
        network: nn.Module,
        config: Any,
        space: TokenSpace,
        classes: Tensor,
        sampling: Any,
        generators: Generators,
    ) -> Tensor:
        """New token grids (B, h, w) of ``classes`` (B,), drawn as ``sampling`` (the run's
        ``sampling`` type) says."""
        ...

    def sampling_record(self, config: Any) -> dict[str, Any]:
        """How ``draw`` samples (for metrics.json)."""
        ...


def _filters(config: ProposalRunConfig) -> dict[str, Any]:
    sampling = config.sampling
    return {"temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p}


@dataclass(frozen=True)
class AutoregressiveKind:
    compile: bool = False
    label = "AR"
    prediction_metrics = ("loss", "accuracy", "top1_accuracy")

    def build(self, config: ARRunConfig, space: TokenSpace, device: torch.device) -> nn.Module:
        return build_network(config, space, pretrained=False).to(device).eval()

    def predictions(
        self,
        network: nn.Module,
        config: ARRunConfig,
        space: TokenSpace,
        classes: Tensor,
        ids: Tensor,
        generators: list[torch.Generator],
    ) -> dict[str, Tensor]:
        layout = config.network.layout(space.codebook_size, config.num_classes)
        sequence = layout.sequence(classes, ids)  # (B, 1 + h*w)
        logits = network(sequence)  # (B, 1 + h*w, V)
        return {
            "loss": next_token_loss(logits, sequence, layout, per_sample=True),
            "top1_accuracy": token_accuracy(logits, sequence, layout, per_sample=True),
            "accuracy": sampled_token_accuracy(
                logits, sequence, layout, generator=generators, per_sample=True, **_filters(config)
            ),
        }

    def draw(
        self,
        network: nn.Module,
        config: ARRunConfig,
        space: TokenSpace,
        classes: Tensor,
        sampling: SamplingConfig,
        generators: Generators,
    ) -> Tensor:
        return sample_tokens(
            network, classes, space, config.num_classes, sampling, generators, compile=self.compile
        )

    def sampling_record(self, config: ARRunConfig) -> dict[str, Any]:
        return _filters(config)


@dataclass(frozen=True)
class MaskedKind:
    compile: bool = False
    label = "NAR"
    prediction_metrics = ("loss", "masked_accuracy")

    def build(self, config: NARRunConfig, space: TokenSpace, device: torch.device) -> nn.Module:
        network = build_masked(config, space).to(device).eval()
        if self.compile:  # every call has the shapes (B, h*w); in place, keys unchanged
            network.compile(mode=inference_mode(device))
        return network

    def predictions(
        self,
        network: nn.Module,
        config: NARRunConfig,
        space: TokenSpace,
        classes: Tensor,
        ids: Tensor,
        generators: list[torch.Generator],
    ) -> dict[str, Tensor]:
        targets = ids.flatten(1)  # (B, N), raster order
        mask = random_mask(*targets.shape, generator=generators, device=targets.device)
        logits = network(classes, targets.masked_fill(mask, network.mask_id))  # (B, N, K)
        return {
            "loss": masked_token_loss(logits, targets, mask, per_sample=True),
            "masked_accuracy": masked_token_accuracy(logits, targets, mask, per_sample=True),
        }

    def draw(
        self,
        network: nn.Module,
        config: NARRunConfig,
        space: TokenSpace,
        classes: Tensor,
        sampling: MaskedSamplingConfig,
        generators: Generators,
    ) -> Tensor:
        return decode_tokens(network, classes, sampling, generators)  # (B, h, w)

    def sampling_record(self, config: NARRunConfig) -> dict[str, Any]:
        sampling = config.sampling
        return {
            **_filters(config),
            "num_steps": sampling.num_steps,
            "choice_temperature": sampling.choice_temperature,
            "guidance_schedule": sampling.guidance_schedule,
        }


def proposal_kind(config: ProposalRunConfig, compile: bool = False) -> ProposalKind:
    """The kind of an AR or NAR run config; ``compile`` as ``--compile`` says."""
    if isinstance(config, NARRunConfig):
        return MaskedKind(compile)
    if isinstance(config, ARRunConfig):
        return AutoregressiveKind(compile)
    raise TypeError(f"not a proposal run config: {type(config).__name__}")


def is_proposal_run(config: Any) -> bool:
    """Whether ``config`` is a run the generator pass evaluates (AR or NAR)."""
    return isinstance(config, ARRunConfig | NARRunConfig)


__all__ = [
    "AutoregressiveKind",
    "MaskedKind",
    "ProposalKind",
    "is_proposal_run",
    "proposal_kind",
]
