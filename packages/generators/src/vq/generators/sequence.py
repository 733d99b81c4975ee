"""How a class label and an image-token grid become one token sequence, and its loss.

A sequence is ``[class] + h*w image tokens`` in row-major order (no BOS/EOS): 257 tokens for
a 16x16 grid. One vocabulary holds both kinds of ids::

    [0, num_classes)                       class labels
    num_classes                            the null ("unconditional") class, with guidance
    [offset, offset + codebook_size)       image tokens, offset = num_classes (+1)

e.g. 1000 + 1 + 8192 = 9193 ids. With classifier-free guidance the class is replaced by the
null id for a fraction of training samples (label dropout), which teaches the same network
the unconditional distribution used at sampling time.

The loss is cross-entropy of each image token given its prefix, over the image-token logits
only: class ids can never be a valid next token, so they are left out of the softmax (the
reference's softmax runs over the full vocabulary; the difference is only the probability
mass an untrained model wastes on impossible ids).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F


@dataclass(frozen=True)
class SequenceLayout:
    """Vocabulary layout of a class-to-image model."""

    num_classes: int
    codebook_size: int
    null_class: bool  # True when the model is trained for classifier-free guidance

    @classmethod
    def from_vocab(cls, vocab_size: int, codebook_size: int, num_classes: int) -> SequenceLayout:
        """The layout of a model with ``vocab_size`` ids (tells whether it has a null class)."""
        extra = vocab_size - codebook_size - num_classes
        if extra not in (0, 1):
            raise ValueError(
                f"vocabulary of {vocab_size} ids does not fit {num_classes} classes "
                f"(+1 null) and {codebook_size} codes"
            )
        return cls(num_classes, codebook_size, null_class=extra == 1)

    @property
    def null_id(self) -> int:
        if not self.null_class:
            raise ValueError("this layout has no null class (trained without guidance)")
        return self.num_classes

    @property
    def image_offset(self) -> int:
        return self.num_classes + int(self.null_class)

    @property
    def vocab_size(self) -> int:
        return self.image_offset + self.codebook_size

    def sequence(self, classes: Tensor, image_tokens: Tensor) -> Tensor:
        """classes (B,), image_tokens (B, h, w) in [0, codebook_size) -> (B, 1 + h*w) ids."""
        flat = image_tokens.flatten(1) + self.image_offset  # (B, h*w), row-major
        return torch.cat((classes[:, None], flat), dim=1)

    def image_logits(self, logits: Tensor) -> Tensor:
        """logits (..., vocab_size) -> (..., codebook_size): the image-token ids only."""
        return logits[..., self.image_offset : self.image_offset + self.codebook_size]

    def predictions(self, logits: Tensor) -> Tensor:
        """Teacher-forced logits (B, T, V) of a sequence -> fp32 (B, T-1, codebook_size): the
        image-token logits of every position that predicts an image token."""
        return self.image_logits(logits[:, :-1]).float()

    def targets(self, tokens: Tensor) -> Tensor:
        """Sequence ids (B, T) -> (B, T-1) code ids of the image tokens, the ``predictions``'
        targets."""
        return tokens[:, 1:] - self.image_offset


def drop_labels(
    classes: Tensor, p: float, null_id: int, generator: torch.Generator | None = None
) -> Tensor:
    """Replace each class by ``null_id`` with probability ``p`` (call in training only)."""
    if p == 0.0:
        return classes
    drop = torch.rand(classes.shape, generator=generator, device=classes.device) < p
    return torch.where(drop, torch.full_like(classes, null_id), classes)


def next_token_loss(
    logits: Tensor, tokens: Tensor, layout: SequenceLayout, *, per_sample: bool = False
) -> Tensor:
    """Mean cross-entropy of every image token given its prefix.

    logits: (B, T, V) of ``tokens`` (B, T) = [class, image tokens...]; position t predicts
    token t + 1, so logits[:, :-1] are scored against tokens[:, 1:] (all image tokens).
    Computed in fp32 whatever the autocast dtype of the forward pass. ``per_sample``
    returns each sequence's mean (B,) instead of the batch mean.
    """
    predicted = layout.predictions(logits)  # (B, T-1, codebook_size)
    targets = layout.targets(tokens)  # (B, T-1)
    losses = F.cross_entropy(predicted.flatten(0, 1), targets.flatten(), reduction="none")
    losses = losses.view_as(targets)  # (B, T-1)
    return losses.mean(dim=1) if per_sample else losses.mean()


@torch.no_grad()
def token_accuracy(
    logits: Tensor, tokens: Tensor, layout: SequenceLayout, *, per_sample: bool = False
) -> Tensor:
    """Fraction of teacher-forced argmax predictions equal to the target image tokens
    (batch mean, or (B,) with ``per_sample``).

    Conditional logits only: for a guided model call this on the conditional batch, never on
    a half-guided one (a bug of the reference). The reference's own metric draws the
    prediction with the sampler instead: ``vq.generators.sampling.sampled_token_accuracy``.
    """
    hits = (layout.predictions(logits).argmax(-1) == layout.targets(tokens)).float()
    return hits.mean(dim=1) if per_sample else hits.mean()
