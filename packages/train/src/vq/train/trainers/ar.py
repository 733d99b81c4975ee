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

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from vq.core.config import Config
from vq.core.errors import UserError
from vq.core.loop import Run, RunConfig
from vq.core.optim import OptimizationConfig
from vq.core.parallel import StrategyConfig, unwrap
from vq.generators import (
    ProposalNetwork,
    ProposalNetworkConfig,
    build_proposal_network,
    drop_labels,
    generate,
    next_token_loss,
    token_accuracy,
)
from vq.train.data import DatasetConfig, build_dataset, collate
from vq.train.data.token_files import TokenFileConfig, TokenFileDataset, read_token_file_header
from vq.train.tokenizer_source import load_frozen_tokenizer

# A flat tagged union: every image dataset of vq.train.data, or a token file.
_IMAGE_DATASETS = typing.get_args(typing.get_args(DatasetConfig)[0])
ARDataConfig = Annotated[
    typing.Union[(*_IMAGE_DATASETS, TokenFileConfig)],  # built from a tuple of types
    Field(discriminator="kind"),
]


# ------------------------------------------------------------------ run config ------


class FrozenTokenizerConfig(Config):
    """A finished tokenizer (or pixel-decoder) run: resolved config file + weights."""

    config: Path
    """``work_dirs/NAME/<config>.py`` of that run (the reference's ``ir_config``)."""
    state_dicts: list[Path] = Field(min_length=1)
    """Weights merged in order, later files winning: ``[ir_state_dict, it_state_dict]``.
    Checkpoint directories (``.../checkpoints/iter_N`` or ``latest``) are accepted."""


class SamplingConfig(Config):
    """How images are drawn (training visuals and the default of the ``sample`` command)."""

    guidance_scale: float = 1.0
    """Classifier-free guidance scale; 1.0 is off. The reference's ``*_cfg`` configs: 1.75."""
    temperature: float = Field(1.0, ge=0.0)
    top_k: int | None = Field(600, ge=1)
    top_p: float | None = Field(0.92, gt=0.0, le=1.0)


class ARRunConfig(RunConfig):
    trainer: Literal["ar"] = "ar"
    network: ProposalNetworkConfig = ProposalNetworkConfig()
    tokenizer: FrozenTokenizerConfig | None = None
    """Needed to tokenize images and to decode samples; optional with a token file (whose
    metadata then gives the codebook size, and training shows no image visuals)."""
    data: ARDataConfig
    val_data: DatasetConfig | None = None
    """Images whose val split ``val``/``test`` evaluate the network on (loss, accuracy,
    gFID); default: ``data`` when it is an image dataset. Set it to train on a token file."""
    num_classes: int = Field(1000, ge=1)
    optimization: OptimizationConfig
    sampling: SamplingConfig = SamplingConfig()
    visual_samples: int = Field(4, ge=1)
    """Images generated for each training visual (the first of the batch's classes)."""

    @model_validator(mode="after")
    def _check(self) -> ARRunConfig:
        if self.tokenizer is None and not isinstance(self.data, TokenFileConfig):
            raise ValueError("tokenizer is required to train on images (or use a token file)")
        if self.sampling.guidance_scale != 1.0 and not self.network.null_class:
            raise ValueError(
                "sampling.guidance_scale != 1 needs network.null_class=True "
                "(classifier-free guidance samples the null class)"
            )
        return self


# ------------------------------------------------------------------ building --------


@dataclass(frozen=True)
class TokenSpace:
    """The codebook and grid the network models."""

    codebook_size: int
    grid: tuple[int, int]

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]


def token_space(config: ARRunConfig, tokenizer: nn.Module | None) -> TokenSpace:
    """Codebook size and grid from the tokenizer and/or the token file; they must agree."""
    if isinstance(config.data, TokenFileConfig):
        header = read_token_file_header(config.data.path)
        size = header.codebook_size
        if tokenizer is not None:
            if size is not None and size != tokenizer.num_codes:
                raise UserError(
                    f"token file {config.data.path} has codebook_size {size} but the "
                    f"tokenizer {config.tokenizer.config} has {tokenizer.num_codes} codes"
                )
            size = tokenizer.num_codes
        if size is None:
            raise UserError(
                f"token file {config.data.path} does not record codebook_size: configure the "
                "tokenizer, or write the file with write_token_file(..., codebook_size=K)"
            )
        return TokenSpace(size, header.grid)
    assert tokenizer is not None  # the config validator requires it for images
    return TokenSpace(tokenizer.num_codes, tuple(tokenizer.grid_size(config.data.image_size)))


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
    generator: torch.Generator | None = None,
) -> Tensor:
    """Token grids (B, h, w) for ``classes`` (B,), drawn as ``sampling`` says."""
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
    )


def transformer_block_parameters(network: ProposalNetworkConfig) -> int:
    """Parameters of one transformer block (counted on the meta device, nothing allocated).

    As ``fsdp_min_params`` this makes every block exactly one FSDP unit: a block's own
    sub-modules (attention, MLP) hold fewer parameters and are not split off. The final
    norm stays with the root unit, and so do the token embedding and head unless they
    outgrow a block (a large vocabulary), in which case each becomes a unit of its own.
    """
    counts = []
    for depth in (0, 1):
        shallow = network.model_copy(
            update={"overrides": {**network.overrides, "depth": depth}, "pretrained": None}
        )
        with torch.device("meta"):
            model = build_proposal_network(shallow, codebook_size=1, num_classes=1)
        counts.append(sum(p.numel() for p in model.parameters()))
    return counts[1] - counts[0]


def fsdp_strategy(network: ProposalNetworkConfig) -> StrategyConfig:
    """FSDP with one shard unit per transformer block."""
    return StrategyConfig(kind="fsdp", fsdp_min_params=transformer_block_parameters(network))


# ------------------------------------------------------------------ trainer ---------


class ARTrainer:
    def __init__(self, config: ARRunConfig, run: Run) -> None:
        self.run, self.config = run, config
        # Frozen, held here and not by run.prepare: never wrapped, optimised or checkpointed.
        self.tokenizer: nn.Module | None = None
        if config.tokenizer is not None:
            self.tokenizer = load_frozen_tokenizer(
                config.tokenizer.config, config.tokenizer.state_dicts
            ).to(run.device)
        self.space = token_space(config, self.tokenizer)

        if isinstance(config.data, TokenFileConfig):
            dataset = TokenFileDataset(config.data.path)
            if dataset.max_token() >= self.space.codebook_size:
                raise UserError(
                    f"token file {config.data.path} holds token {dataset.max_token()}, outside "
                    f"the codebook of {self.space.codebook_size}"
                )
            classes_needed = dataset.num_classes_needed()
        else:
            dataset = build_dataset(config.data, "train")
            classes_needed = len(getattr(dataset, "classes", ()))
        if classes_needed > config.num_classes:
            raise UserError(
                f"the training data has {classes_needed} classes but num_classes is "
                f"{config.num_classes}"
            )
        self.dataset = dataset
        self.collate = collate

        network = build_network(config, self.space)
        self.layout = config.network.layout(self.space.codebook_size, config.num_classes)
        self.model = run.prepare("model", network)
        # Weight decay on every parameter, norms and embeddings included (as the reference).
        self.opt = run.optimization(
            "model", self.model, self.model.parameters(), config.optimization
        )

    @torch.no_grad()
    def tokens_of(self, batch: dict[str, Any]) -> Tensor:
        """(B, h, w) code ids: read from a token file or encoded by the frozen tokenizer."""
        if "tokens" in batch:
            return batch["tokens"]
        assert self.tokenizer is not None
        with self.run.autocast():
            return self.tokenizer.encode(batch["image"])  # (B, 3, H, W) -> (B, h, w)

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

    @torch.no_grad()
    def visuals(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Rows: image / tokenizer reconstruction / generated for the batch's first classes.

        Every rank generates (an FSDP forward needs all of them); a fixed generator makes
        the samples of successive visuals comparable and leaves the training RNG untouched.
        """
        if self.tokenizer is None:
            return {}
        n = min(self.config.visual_samples, batch["category"].shape[0])
        head = {k: batch[k][:n] for k in ("image", "tokens", "category") if k in batch}
        generator = torch.Generator(self.run.device).manual_seed(0)
        generated = self.sample(head["category"], generator)  # (n, h, w)
        with self.run.autocast():
            rows = {"image": head["image"]} if "image" in head else {}
            rows["reconstruction"] = self.tokenizer.decode(self.tokens_of(head))
            rows["generated"] = self.tokenizer.decode(generated)
        return {k: v.float() for k, v in rows.items()}  # (n, 3, H, W) each
