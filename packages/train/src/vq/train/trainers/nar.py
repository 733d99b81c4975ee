"""Trainer of non-autoregressive (MaskGIT-style) class-to-image proposal networks.

One step::

    image (B, 3, H, W) --frozen tokenizer.encode--> tokens (B, h, w)     [or a token file]
    mask_batch: per sample a cosine-schedule share of the h*w cells -> mask id,
                each class -> the null class with probability network.label_dropout
    classes (B,), masked grid (B, h*w) --network--> logits (B, h*w, K)
    loss = cross-entropy at the masked cells only (label smoothing as configured)

The frozen tokenizer, the token-file alternative and the class checks are those of the AR
stage (``vq.train.proposal``). The masking draws from torch's global RNG, which the loop
seeds per rank and checkpoints, so a resumed run masks exactly as one that never stopped.

Sampling is ``parallel_decode``: the grid starts fully masked and ``sampling.num_steps``
(12) steps each reveal the most confident cells, ordered with Gumbel noise scaled by
``sampling.choice_temperature`` (4.5); classifier-free guidance mixes conditional and
null-class logits with ``sampling.guidance_scale``. The recipe is configs/nar/_recipe.py.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from vq.core.loop import Run
from vq.core.parallel import StrategyConfig, unwrap
from vq.generators import (
    Generators,
    MaskedNetworkConfig,
    MaskGIT,
    build_masked_network,
    mask_batch,
    masked_token_accuracy,
    masked_token_loss,
    parallel_decode,
)
from vq.train.data import collate
from vq.train.proposal import (
    ProposalRunConfig,
    SamplingConfig,
    TokenSpace,
    block_parameters,
    frozen_tokenizer,
    token_space,
    tokens_of,
    training_data,
    visual_rows,
)


class MaskedSamplingConfig(SamplingConfig):
    """``SamplingConfig`` plus the steps of parallel decoding; no top-k / top-p by default
    (MaskGIT draws every cell from the full distribution)."""

    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    num_steps: int = Field(12, ge=1)
    """Decoding steps; each reveals a cosine-schedule share of the cells."""
    choice_temperature: float = Field(4.5, ge=0.0)
    """Scale of the Gumbel noise on the confidences, annealed to 0 at the last step."""
    guidance_schedule: Literal["constant", "linear"] = "constant"
    """``linear`` ramps the guidance scale from 1 at the first step to ``guidance_scale``."""


class NARRunConfig(ProposalRunConfig):
    """Tokenizer, data, classes, optimisation and visuals: ``ProposalRunConfig``."""

    trainer: Literal["nar"] = "nar"
    network: MaskedNetworkConfig = MaskedNetworkConfig()
    sampling: MaskedSamplingConfig = MaskedSamplingConfig()
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    """Of the training loss (MaskGIT's recipe: 0.1); ``val``/``test`` report the plain
    cross-entropy, the negative log-likelihood of the masked codes."""

    @property
    def can_guide(self) -> bool:
        """The null class is always in the network, but only label dropout trains it."""
        return self.network.label_dropout > 0.0

    @model_validator(mode="after")
    def _check(self) -> NARRunConfig:
        if self.sampling.guidance_scale != 1.0 and not self.can_guide:
            raise ValueError(
                "sampling.guidance_scale != 1 needs network.label_dropout > 0 "
                "(classifier-free guidance samples the null class, which it trains)"
            )
        return self


def build_masked(config: NARRunConfig, space: TokenSpace) -> MaskGIT:
    """The untrained network for the run's classes and the tokenizer's codebook and grid."""
    return build_masked_network(config.network, space.codebook_size, config.num_classes, space.grid)


@torch.no_grad()
def decode_tokens(
    network: MaskGIT,
    classes: Tensor,
    sampling: MaskedSamplingConfig,
    generator: Generators = None,
) -> Tensor:
    """Token grids (B, h, w) for ``classes`` (B,), decoded as ``sampling`` says (one
    generator, or one per sample)."""
    return parallel_decode(
        network,
        classes,
        num_steps=sampling.num_steps,
        guidance_scale=sampling.guidance_scale,
        guidance_schedule=sampling.guidance_schedule,
        temperature=sampling.temperature,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        choice_temperature=sampling.choice_temperature,
        generator=generator,
    )


def masked_block_parameters(network: MaskedNetworkConfig) -> int:
    """Parameters of one bidirectional block (``proposal.block_parameters``)."""

    def build(depth: int) -> nn.Module:
        shallow = network.model_copy(update={"overrides": {**network.overrides, "depth": depth}})
        return build_masked_network(shallow, codebook_size=1, num_classes=1, grid=(1, 1))

    return block_parameters(build)


def masked_fsdp_strategy(network: MaskedNetworkConfig) -> StrategyConfig:
    """FSDP with one shard unit per bidirectional block."""
    return StrategyConfig(kind="fsdp", fsdp_min_params=masked_block_parameters(network))


class NARTrainer:
    def __init__(self, config: NARRunConfig, run: Run) -> None:
        self.run, self.config = run, config
        # Frozen, held here and not by run.prepare: never wrapped, optimised or checkpointed.
        self.tokenizer = frozen_tokenizer(config, run.device)
        self.space = token_space(config, self.tokenizer)
        self.dataset = training_data(config, self.space)
        self.collate = collate

        network = build_masked(config, self.space)
        self.mask_id, self.null_id = network.mask_id, network.null_id
        self.model = run.prepare("model", network)
        self.opt = run.optimization(
            "model", self.model, self.model.parameters(), config.optimization
        )

    def step(self, batch: dict[str, Any], iteration: int) -> dict[str, Tensor | float]:
        tokens = tokens_of(self.run, self.tokenizer, batch)  # (B, h, w)
        masked = mask_batch(
            batch["category"], tokens, self.mask_id, self.null_id, self.config.network.label_dropout
        )  # global RNG: seeded per rank and restored on resume by the loop
        with self.opt.accumulate():
            with self.run.autocast():
                logits = self.model(masked.classes, masked.inputs)  # (B, h*w, K)
            loss = masked_token_loss(
                logits, masked.targets, masked.mask, label_smoothing=self.config.label_smoothing
            )  # fp32
            self.opt.backward(loss)
        # Argmax accuracy at the masked cells of this batch (dropped labels included).
        accuracy = masked_token_accuracy(logits.detach(), masked.targets, masked.mask)
        return {"loss": loss, "accuracy": accuracy, **self.opt.step(iteration)}

    @torch.no_grad()
    def sample(self, classes: Tensor, generator: torch.Generator) -> Tensor:
        """Token grids (B, h, w) for ``classes`` (B,) with the configured sampling."""
        with self.run.autocast():
            return decode_tokens(unwrap(self.model), classes, self.config.sampling, generator)

    def visuals(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Rows: image / tokenizer reconstruction / generated (``proposal.visual_rows``)."""
        return visual_rows(self.run, self.tokenizer, batch, self.config.visual_samples, self.sample)
