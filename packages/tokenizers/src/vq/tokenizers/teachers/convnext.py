"""torchvision's ConvNeXt-B (``convnext_base``, ImageNet-1k ``IMAGENET1K_V1``).

Features are the stage-4 map (stride 32: 7x7x1024 at 224 px), upsampled bicubically to
the stride-16 grid (14x14) that the VQ-KD decoder predicts, as in the reference; the
teacher therefore reports ``patch_size=16``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from vq.tokenizers.teachers.base import (
    PRETRAINED_DIR,
    Teacher,
    TeacherSpec,
    import_optional,
    no_projection,
)

NATIVE_SIZE = 224
PATCH_SIZE = 16  # the stride-32 map is upsampled x2
# Channels and blocks of the four stages of ConvNeXt-B.
CONVNEXT_B = {"widths": (128, 256, 512, 1024), "depths": (3, 3, 27, 3)}
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
SOURCE = (
    "https://download.pytorch.org/models/convnext_base-6075fbad.pth (torchvision "
    "ConvNeXt_Base_Weights.IMAGENET1K_V1)"
)


class ConvNeXtTeacher(Teacher):
    def __init__(self, *, image_size: int | None = None, arch: Mapping[str, Any] | None = None):
        convnext = import_optional("torchvision.models.convnext")
        sizes = {**CONVNEXT_B, **(arch or {})}
        widths, depths = sizes["widths"], sizes["depths"]
        outs = (*widths[1:], None)  # the last stage keeps its width
        blocks = [convnext.CNBlockConfig(w, o, d) for w, o, d in zip(widths, outs, depths)]
        # Stochastic depth 0.5 as torchvision's convnext_base; inactive in eval mode.
        network = convnext.ConvNeXt(blocks, stochastic_depth_prob=0.5)
        super().__init__(
            network,
            name="convnext",
            dim=widths[-1],
            patch_size=PATCH_SIZE,
            image_size=image_size or NATIVE_SIZE,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        )

    def extract(self, x: Tensor) -> Tensor:
        features = self.network.features(x)  # (B, C, S/32, S/32)
        grid = x.shape[-1] // self.patch_size
        return F.interpolate(features, size=(grid, grid), mode="bicubic", align_corners=False)


def build(
    *,
    with_projection: bool | None = None,
    image_size: int | None = None,
    arch: Mapping[str, Any] | None = None,
) -> Teacher:
    no_projection("convnext", with_projection)
    return ConvNeXtTeacher(image_size=image_size, arch=arch)


SPEC = TeacherSpec(build, PRETRAINED_DIR / "convnext.pth", SOURCE)
