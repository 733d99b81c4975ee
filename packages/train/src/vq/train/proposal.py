"""What the proposal-network trainers share: the AR (``trainers.ar``) and the NAR
(``trainers.nar``) stage both model the token grids of a frozen tokenizer run.

* ``ProposalRunConfig``: the fields of both run configs (frozen tokenizer, images or a token
  file, classes, optimisation, visuals); each trainer's config adds its network and sampling.
* ``SamplingConfig``: the sampling knobs both samplers have (guidance, temperature, top-k,
  top-p); the NAR config extends it with its decoding steps.
* ``TokenSpace`` / ``token_space``: the codebook size and grid, from the tokenizer and/or the
  token file, which must agree.
* ``training_data``: the training dataset (images or a token file) and its class checks.
* ``frozen_tokenizer``, ``tokens_of``, ``visual_rows``: the frozen tokenizer, the tokens of a
  batch, and the rows of a training visual.
* ``block_parameters``: the parameters of one transformer block, FSDP's unit size.

Trainers import this module and never each other (``tests/test_layering.py``).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.utils.data import Dataset

from vq.core.config import Config
from vq.core.errors import UserError
from vq.core.loop import Run, RunConfig
from vq.core.optim import OptimizationConfig
from vq.train.data import DatasetConfig, build_dataset
from vq.train.data.token_files import TokenFileConfig, TokenFileDataset, read_token_file_header
from vq.train.tokenizer_source import load_frozen_tokenizer

# A flat tagged union: every image dataset of vq.train.data, or a token file.
_IMAGE_DATASETS = typing.get_args(typing.get_args(DatasetConfig)[0])
ProposalDataConfig = Annotated[
    typing.Union[(*_IMAGE_DATASETS, TokenFileConfig)],  # built from a tuple of types
    Field(discriminator="kind"),
]


class FrozenTokenizerConfig(Config):
    """A finished tokenizer (or pixel-decoder) run: resolved config file + weights."""

    config: Path
    """``work_dirs/NAME/<config>.py`` of that run (the reference's ``ir_config``)."""
    state_dicts: list[Path] = Field(min_length=1)
    """Weights merged in order, later files winning: ``[ir_state_dict, it_state_dict]``.
    Checkpoint directories (``.../checkpoints/iter_N`` or ``latest``) are accepted."""

    @classmethod
    def from_options(
        cls, stage: str, ir_config: str | None, ir_state_dict: str | None, it_state_dict: str | None
    ) -> FrozenTokenizerConfig:
        """The frozen tokenizer a ``stage`` config ("AR", "NAR") names by the reference's
        options; without ``ir_config`` and ``ir_state_dict``, one ``UserError`` line."""
        if ir_config is None or ir_state_dict is None:
            raise UserError(
                f"the {stage} configs need the frozen tokenizer: --config-options "
                "ir_config::work_dirs/<run>/<config>.py ir_state_dict::work_dirs/<run>/"
                "checkpoints/latest (and it_state_dict::... for a pixel-decoder run)"
            )
        weights = [ir_state_dict] + ([it_state_dict] if it_state_dict else [])
        return cls(config=Path(ir_config), state_dicts=[Path(w) for w in weights])


class SamplingConfig(Config):
    """How images are drawn (training visuals and the default of the ``sample`` command)."""

    guidance_scale: float = 1.0
    """Classifier-free guidance scale; 1.0 is off. The reference's ``*_cfg`` configs: 1.75."""
    temperature: float = Field(1.0, ge=0.0)
    top_k: int | None = Field(600, ge=1)
    top_p: float | None = Field(0.92, gt=0.0, le=1.0)


class ProposalRunConfig(RunConfig):
    """The fields of the AR and NAR run configs; each subclass adds its ``network``, its
    ``sampling`` and ``can_guide`` (whether its network learnt the null class)."""

    tokenizer: FrozenTokenizerConfig | None = None
    """Needed to tokenize images and to decode samples; optional with a token file (whose
    metadata then gives the codebook size, and training shows no image visuals)."""
    data: ProposalDataConfig
    val_data: DatasetConfig | None = None
    """Images whose val split ``val``/``test`` evaluate the network on (loss, accuracy,
    gFID); default: ``data`` when it is an image dataset. Set it to train on a token file."""
    num_classes: int = Field(1000, ge=1)
    optimization: OptimizationConfig
    sampling: SamplingConfig = SamplingConfig()
    visual_samples: int = Field(4, ge=1)
    """Images generated for each training visual (the first of the batch's classes)."""

    @model_validator(mode="after")
    def _check_proposal(self) -> ProposalRunConfig:
        if self.tokenizer is None and not isinstance(self.data, TokenFileConfig):
            raise ValueError("tokenizer is required to train on images (or use a token file)")
        return self


def frozen_tokenizer(config: ProposalRunConfig, device: torch.device) -> nn.Module | None:
    """The run's frozen tokenizer on ``device`` (None without one: a token file run).

    Trainers hold it themselves, outside ``run.prepare``, so it is never wrapped, optimised
    or written into checkpoints.
    """
    if config.tokenizer is None:
        return None
    tokenizer = load_frozen_tokenizer(config.tokenizer.config, config.tokenizer.state_dicts)
    return tokenizer.to(device)


@dataclass(frozen=True)
class TokenSpace:
    """The codebook and grid the network models."""

    codebook_size: int
    grid: tuple[int, int]

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]


def token_space(config: ProposalRunConfig, tokenizer: nn.Module | None) -> TokenSpace:
    """Codebook size and grid from the tokenizer and/or the token file; they must agree."""
    if isinstance(config.data, TokenFileConfig):
        header = read_token_file_header(config.data.path)
        size = header.codebook_size
        if tokenizer is not None:
            assert config.tokenizer is not None
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


def training_data(config: ProposalRunConfig, space: TokenSpace) -> Dataset:
    """The train split of the images, or the token file; refuses tokens outside the codebook
    and more classes than ``num_classes``."""
    if isinstance(config.data, TokenFileConfig):
        dataset = TokenFileDataset(config.data.path)
        if dataset.max_token() >= space.codebook_size:
            raise UserError(
                f"token file {config.data.path} holds token {dataset.max_token()}, outside "
                f"the codebook of {space.codebook_size}"
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
    return dataset


@torch.no_grad()
def tokens_of(run: Run, tokenizer: nn.Module | None, batch: dict[str, Any]) -> Tensor:
    """(B, h, w) code ids: read from a token file or encoded by the frozen tokenizer."""
    if "tokens" in batch:
        return batch["tokens"]
    assert tokenizer is not None
    with run.autocast():
        return tokenizer.encode(batch["image"])  # (B, 3, H, W) -> (B, h, w)


Sampler = Callable[[Tensor, torch.Generator], Tensor]
"""classes (B,), generator -> token grids (B, h, w)."""


@torch.no_grad()
def visual_rows(
    run: Run, tokenizer: nn.Module | None, batch: dict[str, Any], n: int, sample: Sampler
) -> dict[str, Tensor]:
    """Rows: image / tokenizer reconstruction / generated for the batch's first ``n`` classes.

    Every rank generates (an FSDP forward needs all of them); a fixed generator makes
    the samples of successive visuals comparable and leaves the training RNG untouched.
    """
    if tokenizer is None:
        return {}
    n = min(n, batch["category"].shape[0])
    head = {k: batch[k][:n] for k in ("image", "tokens", "category") if k in batch}
    generator = torch.Generator(run.device).manual_seed(0)
    generated = sample(head["category"], generator)  # (n, h, w)
    with run.autocast():
        rows = {"image": head["image"]} if "image" in head else {}
        rows["reconstruction"] = tokenizer.decode(tokens_of(run, tokenizer, head))
        rows["generated"] = tokenizer.decode(generated)
    return {k: v.float() for k, v in rows.items()}  # (n, 3, H, W) each


def block_parameters(build: Callable[[int], nn.Module]) -> int:
    """Parameters of one transformer block: a ``build(depth)`` network of depth 1 minus one of
    depth 0, counted on the meta device (nothing allocated).

    As ``fsdp_min_params`` this makes every block exactly one FSDP unit: a block's own
    sub-modules (attention, MLP) hold fewer parameters and are not split off. The final
    norm stays with the root unit, and so do the embeddings and head unless they outgrow a
    block (a large vocabulary), in which case each becomes a unit of its own.
    """
    counts = []
    for depth in (0, 1):
        with torch.device("meta"):
            model = build(depth)
        counts.append(sum(p.numel() for p in model.parameters()))
    return counts[1] - counts[0]
