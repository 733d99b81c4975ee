"""The MaskGIT training objective: mask part of each grid, predict the masked codes.

Per sample, a mask ratio ``r = cos(pi/2 * u)`` with ``u ~ U(0, 1)`` (the cosine schedule, the
same curve the decoder follows from all masked to none), ``ceil(r * N)`` of the N grid cells,
clamped to [1, N], chosen uniformly at random, replaced by the mask token. The loss is
cross-entropy over the codebook at the masked cells only (the visible cells are inputs, not
targets), averaged over all masked cells of the batch. With classifier-free guidance each
class is replaced by the null class with probability ``label_dropout`` (0.1), through
``sequence.drop_labels``.

Every random number comes from the caller's generator, in a fixed order (mask ratios,
cell scores, label dropout), so a batch is masked identically given the generator's state.

The ids of a masked network (``MaskedTokenNetwork``): codes [0, codebook_size) and the mask
token ``mask_id = codebook_size`` on the grid; classes [0, num_classes) and the null class
``null_id = num_classes``. One training step of a trainer::

    batch = mask_batch(classes, grids, model.mask_id, model.null_id, 0.1, generator=g)
    logits = model(batch.classes, batch.inputs)  # (B, N, K)
    loss = masked_token_loss(logits, batch.targets, batch.mask)
    accuracy = masked_token_accuracy(logits, batch.targets, batch.mask)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.nn import functional as F

from vq.generators.sampling import Generators, uniforms
from vq.generators.sequence import drop_labels


@runtime_checkable
class MaskedTokenNetwork(Protocol):
    """What the masking objective and the parallel decoder need from a NAR network
    (``vq.generators.maskgit.MaskGIT`` is one)."""

    codebook_size: int  # logits over [0, codebook_size); input id codebook_size = mask
    num_classes: int  # class ids [0, num_classes); num_classes = the null class
    grid: tuple[int, int]  # (h, w): the model scores h*w positions
    training: bool

    @property
    def mask_id(self) -> int: ...

    @property
    def null_id(self) -> int: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def __call__(self, classes: Tensor, tokens: Tensor) -> Tensor:
        """classes (B,), tokens (B, h*w) with mask_id at masked cells -> logits (B, h*w, K)."""
        ...


def cosine_mask_ratio(u: Tensor) -> Tensor:
    """u in [0, 1] -> the fraction of masked cells, cos(pi/2 * u): 1 at u = 0, 0 at u = 1."""
    return torch.cos(math.pi / 2 * u)


def masked_counts(ratio: Tensor, num_tokens: int) -> Tensor:
    """Mask ratios (B,) -> cells to mask per sample, ceil(ratio * N) clamped to [1, N] (long)."""
    return torch.ceil(ratio * num_tokens).long().clamp_(1, num_tokens)


def random_mask(
    batch_size: int, num_tokens: int, *, generator: Generators = None, device: torch.device
) -> Tensor:
    """(B, N) bool, True at the masked cells: per sample a cosine-schedule count of cells,
    chosen uniformly at random (the cells with the smallest of N uniform scores).

    ``generator`` may be one generator per sample (``sampling.Generators``): a sample's mask
    then does not depend on the batch it is drawn in.
    """
    counts = masked_counts(
        cosine_mask_ratio(uniforms((batch_size,), generator, device)), num_tokens
    )
    scores = uniforms((batch_size, num_tokens), generator, device)  # (B, N)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # (B, N) rank of each cell's score
    return ranks < counts[:, None]


@dataclass(frozen=True)
class MaskedBatch:
    """One training batch of a masked network."""

    classes: Tensor  # (B,) class ids, some replaced by the null id (label dropout)
    inputs: Tensor  # (B, N) codes with mask_id at the masked cells
    targets: Tensor  # (B, N) the original codes, raster order
    mask: Tensor  # (B, N) bool, True where masked (where the loss is taken)


def mask_batch(
    classes: Tensor,
    grids: Tensor,
    mask_id: int,
    null_id: int,
    label_dropout: float = 0.1,
    *,
    generator: torch.Generator | None = None,
) -> MaskedBatch:
    """classes (B,), grids (B, h, w) codes -> the masked inputs and targets of one step.

    Call in training only (label dropout). Deterministic given ``generator``'s state.
    """
    targets = grids.flatten(1)  # (B, N), raster order
    mask = random_mask(*targets.shape, generator=generator, device=targets.device)
    inputs = targets.masked_fill(mask, mask_id)
    dropped = drop_labels(classes, label_dropout, null_id, generator)
    return MaskedBatch(dropped, inputs, targets, mask)


def masked_token_loss(
    logits: Tensor,
    targets: Tensor,
    mask: Tensor,
    *,
    per_sample: bool = False,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy over the codebook at the masked cells only, in fp32.

    logits (B, N, K), targets (B, N), mask (B, N) bool. The batch loss is the mean over every
    masked cell of the batch (a sample with more masked cells weighs more, as each cell is
    one prediction); ``per_sample`` returns each sample's mean over its own masked cells (B,).
    ``label_smoothing`` eps takes the target distribution to (1 - eps) one-hot + eps uniform
    over the K codes (MaskGIT trains with 0.1); 0 is the negative log-likelihood.
    """
    losses = F.cross_entropy(
        logits.float().flatten(0, 1),
        targets.flatten(),
        reduction="none",
        label_smoothing=label_smoothing,
    )
    return _masked_mean(losses.view_as(targets), mask, per_sample)


@torch.no_grad()
def masked_token_accuracy(
    logits: Tensor, targets: Tensor, mask: Tensor, *, per_sample: bool = False
) -> Tensor:
    """Fraction of masked cells whose argmax code equals the target (means as the loss)."""
    hits = (logits.argmax(dim=-1) == targets).float()  # (B, N)
    return _masked_mean(hits, mask, per_sample)


def _masked_mean(values: Tensor, mask: Tensor, per_sample: bool) -> Tensor:
    """Mean of values (B, N) over the True cells of mask (B, N): overall or per row."""
    weights = mask.to(values.dtype)
    if per_sample:
        return (values * weights).sum(dim=1) / weights.sum(dim=1)
    return (values * weights).sum() / weights.sum()
