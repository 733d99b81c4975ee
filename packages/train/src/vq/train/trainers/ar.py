"""Trainer of autoregressive class-to-image proposal networks (GPT-2 / LLaMA).

One step::

    image (B, 3, H, W) --frozen tokenizer.encode--> tokens (B, h, w)     [or a token file]
    [class] + h*w tokens (B, 1 + h*w) --network--> logits (B, 1 + h*w, V)
    loss = cross-entropy of every image token given its prefix (image-token logits only)

The tokenizer is rebuilt from a finished run (``vq.train.tokenizer_source``: its resolved
config file plus weights, the reference's ``ir_config`` / ``ir_state_dict`` /
``it_state_dict``). It is frozen and held by the trainer, outside ``run.prepare``, so it is
never wrapped, never optimised and never written into checkpoints.

With classifier-free guidance (``network.null_class``) each class is replaced by the null
id with probability ``network.label_dropout`` (0.1) during training, and sampling mixes
conditional and null-class logits with ``sampling.guidance_scale`` (1.75).

Tokens can also be read from a *token file* written ahead (``TokenFileConfig``; the format
is ``vq.train.data.token_files``): it saves the tokenizer's forward pass in every step of a
long run, at the price of one fixed view of each image.

Recipe (configs/ar/README.md): AdamW lr 1e-4, betas (0.9, 0.98), weight decay 0.2 on every
parameter, eps 1e-6; cosine from 1e-4 to 0 over the run, no warm-up; 260k iterations of 96
images; weak augmentation; samples drawn with temperature 1.0, top-k 600, top-p 0.92.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import model_validator
from torch import Tensor, nn

from vq.core.errors import UserError
from vq.core.loop import Run
from vq.core.parallel import StrategyConfig, unwrap
from vq.generators import (
    Generators,
    ProposalNetwork,
    ProposalNetworkConfig,
    build_proposal_network,
    drop_labels,
    generate,
    next_token_loss,
    token_accuracy,
)
from vq.train.data import collate
from vq.train.data.token_files import TokenFileConfig
from vq.train.proposal import (
    FrozenTokenizerConfig,
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

__all__ = [
    "ARRunConfig",
    "ARTrainer",
    "FrozenTokenizerConfig",
    "SamplingConfig",
    "TokenFileConfig",
    "TokenSpace",
    "build_network",
    "fsdp_strategy",
    "sample_tokens",
    "token_space",
    "transformer_block_parameters",
]

# ------------------------------------------------------------------ run config ------


class ARRunConfig(ProposalRunConfig):
    """Tokenizer, data, classes, optimisation and visuals: ``ProposalRunConfig``."""

    trainer: Literal["ar"] = "ar"
    network: ProposalNetworkConfig = ProposalNetworkConfig()

    @property
    def can_guide(self) -> bool:
        return self.network.null_class

    @model_validator(mode="after")
    def _check(self) -> ARRunConfig:
        if self.sampling.guidance_scale != 1.0 and not self.network.null_class:
            raise ValueError(
                "sampling.guidance_scale != 1 needs network.null_class=True "
                "(classifier-free guidance samples the null class)"
            )
        return self


# ------------------------------------------------------------------ building --------


def build_network(
    config: ARRunConfig, space: TokenSpace, *, pretrained: bool = True
) -> ProposalNetwork:
    """The untrained network; ``pretrained=False`` skips GPT-2 text weights (sampling loads
    a trained checkpoint over every weight anyway)."""
    network_config = config.network
    if not pretrained:
        network_config = network_config.model_copy(update={"pretrained": None})
    network = build_proposal_network(network_config, space.codebook_size, config.num_classes)
    if 1 + space.num_tokens > network.max_seq_len:
        raise UserError(
            f"a {space.grid[0]}x{space.grid[1]} grid needs {1 + space.num_tokens} positions, "
            f"the {config.network.architecture} network has max_seq_len {network.max_seq_len}"
        )
    return network


@torch.no_grad()
def sample_tokens(
    network: ProposalNetwork,
    classes: Tensor,
    space: TokenSpace,
    num_classes: int,
    sampling: SamplingConfig,
    generator: Generators = None,
    *,
    compile: bool = False,
) -> Tensor:
    """Token grids (B, h, w) for ``classes`` (B,), drawn as ``sampling`` says (one
    generator, or one per sample); ``compile`` runs the one-token step compiled
    (``vq.generators.sampling.generate``)."""
    return generate(
        network,
        classes,
        space.grid,
        space.codebook_size,
        num_classes,
        guidance_scale=sampling.guidance_scale,
        temperature=sampling.temperature,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        generator=generator,
        compile=compile,
    )


def transformer_block_parameters(network: ProposalNetworkConfig) -> int:
    """Parameters of one transformer block (``proposal.block_parameters``)."""

    def build(depth: int) -> nn.Module:
        overrides = {**network.overrides, "depth": depth}
        shallow = network.model_copy(update={"overrides": overrides, "pretrained": None})
        return build_proposal_network(shallow, codebook_size=1, num_classes=1)

    return block_parameters(build)


def fsdp_strategy(network: ProposalNetworkConfig) -> StrategyConfig:
    """FSDP with one shard unit per transformer block."""
    return StrategyConfig(kind="fsdp", fsdp_min_params=transformer_block_parameters(network))


# ------------------------------------------------------------------ trainer ---------


class ARTrainer:
    def __init__(self, config: ARRunConfig, run: Run) -> None:
        self.run, self.config = run, config
        # Frozen, held here and not by run.prepare: never wrapped, optimised or checkpointed.
        self.tokenizer = frozen_tokenizer(config, run.device)
        self.space = token_space(config, self.tokenizer)
        self.dataset = training_data(config, self.space)
        self.collate = collate

        network = build_network(config, self.space)
        self.layout = config.network.layout(self.space.codebook_size, config.num_classes)
        self.model = run.prepare("model", network)
        # Weight decay on every parameter, norms and embeddings included (as the reference).
        self.opt = run.optimization(
            "model", self.model, self.model.parameters(), config.optimization
        )

    def tokens_of(self, batch: dict[str, Any]) -> Tensor:
        """(B, h, w) code ids: read from a token file or encoded by the frozen tokenizer."""
        return tokens_of(self.run, self.tokenizer, batch)

    def step(self, batch: dict[str, Any], iteration: int) -> dict[str, Tensor | float]:
        tokens = self.tokens_of(batch)  # (B, h, w)
        classes = batch["category"]  # (B,)
        if self.layout.null_class:
            p = self.config.network.label_dropout
            classes = drop_labels(classes, p, self.layout.null_id)
        sequence = self.layout.sequence(classes, tokens)  # (B, 1 + h*w)
        with self.opt.accumulate():
            with self.run.autocast():
                logits = self.model(sequence)  # (B, 1 + h*w, V)
            loss = next_token_loss(logits, sequence, self.layout)  # fp32
            self.opt.backward(loss)
        # Teacher-forced argmax accuracy on this batch (dropped labels included).
        accuracy = token_accuracy(logits.detach(), sequence, self.layout)
        return {"loss": loss, "accuracy": accuracy, **self.opt.step(iteration)}

    @torch.no_grad()
    def sample(self, classes: Tensor, generator: torch.Generator) -> Tensor:
        """Token grids (B, h, w) for ``classes`` (B,) with the configured sampling."""
        with self.run.autocast():
            return sample_tokens(
                unwrap(self.model),
                classes,
                self.space,
                self.config.num_classes,
                self.config.sampling,
                generator,
            )

    def visuals(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Rows: image / tokenizer reconstruction / generated (``proposal.visual_rows``)."""
        return visual_rows(self.run, self.tokenizer, batch, self.config.visual_samples, self.sample)
