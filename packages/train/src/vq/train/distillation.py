"""Feature distillation from a frozen teacher: targets and the cosine objective.

VQ-KD training minimises, and its evaluation reports, the same quantity: the mean over
tokens of ``1 - cos(prediction, target)`` between the decoder's predicted features and the
teacher's patch features on the token grid.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from vq.tokenizers.teachers import Teacher


def distillation_targets(teacher: Teacher, original_image: Tensor, grid: tuple[int, int]) -> Tensor:
    """The teacher's patch features of uint8 ``original_image`` on the token ``grid``.

    ``(B, 3, H, W)`` uint8 -> ``(B, D, h, w)`` fp32. Features on another grid (OpenCLIP's
    16x16 at 224 px) are resized bicubically; on the same grid they are taken as they are.
    """
    target = teacher(original_image).float()  # (B, D, h_t, w_t), no grad
    if tuple(target.shape[-2:]) != tuple(grid):
        target = F.interpolate(target, size=grid, mode="bicubic", align_corners=False)
    return target


def cosine_distance(prediction: Tensor, target: Tensor) -> Tensor:
    """``(B, D, h, w)`` maps -> ``(B,)``: per image, the mean over tokens of ``1 - cos``, fp32."""
    cosine = F.cosine_similarity(prediction.float(), target.float(), dim=1)  # (B, h, w)
    return (1.0 - cosine).flatten(1).mean(dim=1)


def cosine_distillation_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """The training objective: :func:`cosine_distance` averaged over the batch (a scalar)."""
    return cosine_distance(prediction, target).mean()
