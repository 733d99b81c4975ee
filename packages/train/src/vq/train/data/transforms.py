"""The four image pipelines of the reference recipes and the uint8 <-> float conversions.

Every pipeline takes a PIL RGB image and returns a ``uint8`` tensor ``(3, S, S)``; the model
sees ``to_float`` of it. Interpolation is bicubic with antialiasing everywhere (the reference
configs write ``interpolation=3``). The geometric steps run on the PIL image, as in the
reference, so a resized pixel is PIL's bicubic filter, not torch's.

======== ============================================================================ =========
name     pipeline                                                                     used by
======== ============================================================================ =========
default  RandomResizedCrop(S, scale (0.08, 1), ratio (3/4, 4/3)), horizontal flip    VQ-KD
strong   RandomResizedCrop(S, scale (0.8, 1), ratio (3/4, 4/3)), horizontal flip     VQGAN etc.
weak     Resize(S) (short side), RandomCrop(S), horizontal flip                       AR
none     Resize(S) (short side), CenterCrop(S)                                        validation
======== ============================================================================ =========

The random steps draw from torch's global RNG, so seeding torch makes them reproducible.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode

from vq.core.errors import UserError

Augmentation = Literal["default", "weak", "strong", "none"]
AUGMENTATIONS: tuple[str, ...] = get_args(Augmentation)

_CROP_SCALES = {"default": (0.08, 1.0), "strong": (0.8, 1.0)}
_RATIO = (3 / 4, 4 / 3)


def build_transform(augmentation: Augmentation, image_size: int) -> v2.Compose:
    """The reference pipeline ``augmentation`` at ``image_size``: PIL RGB -> uint8 (3, S, S)."""
    if image_size <= 0:
        raise UserError(f"image_size must be positive, got {image_size}")
    bicubic = {"interpolation": InterpolationMode.BICUBIC, "antialias": True}
    steps: list[v2.Transform]
    if augmentation in _CROP_SCALES:
        steps = [
            v2.RandomResizedCrop(
                image_size, scale=_CROP_SCALES[augmentation], ratio=_RATIO, **bicubic
            ),
            v2.RandomHorizontalFlip(),
        ]
    elif augmentation == "weak":
        steps = [
            v2.Resize(image_size, **bicubic),
            v2.RandomCrop(image_size),
            v2.RandomHorizontalFlip(),
        ]
    elif augmentation == "none":
        steps = [v2.Resize(image_size, **bicubic), v2.CenterCrop(image_size)]
    else:
        raise UserError(
            f"unknown augmentation {augmentation!r}; choose one of {', '.join(AUGMENTATIONS)}"
        )
    # PILToTensor (not ToImage) so that items are plain tensors, not tv_tensors subclasses.
    return v2.Compose([*steps, v2.PILToTensor()])


def to_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [-1, 1] (``x / 127.5 - 1``), any shape."""
    if image.dtype != torch.uint8:
        raise TypeError(f"to_float expects a uint8 image, got {image.dtype}")
    return image.to(torch.float32) / 127.5 - 1


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8, rounding to the nearest level, any shape.

    The reference truncates (``.to(uint8)`` after the clamp), which maps a value a hair below
    an integer level (float error of ``to_float``) one level down and biases every decoded
    image darker by half a level on average. Rounding makes ``to_uint8(to_float(x)) == x``.
    """
    return ((image.detach().float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
