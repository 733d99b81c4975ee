"""torchvision's supervised ViT-B/16 (``vit_b_16``, ImageNet-1k ``IMAGENET1K_V1``).

Targets are the 768-d **patch** tokens of the encoder output (after ``encoder.ln``),
``tokens[:, 1:]``. The reference's forward hook kept ``tokens[:, :-1]`` instead, i.e.
[cls, p0 .. p194], shifting every target one position; that bug is fixed here.

torchvision's ViT checks the input size against the one it was built for, so a teacher
at another resolution is built for it and the checkpoint's position embeddings are
resized bicubically on load (torchvision's ``interpolate_embeddings``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from vq.tokenizers.teachers.base import (
    PRETRAINED_DIR,
    Teacher,
    TeacherSpec,
    import_optional,
    no_projection,
    tokens_to_grid,
)

NATIVE_SIZE = 224
VIT_B_16 = {"patch_size": 16, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "mlp_dim": 3072}
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
SOURCE = (
    "https://download.pytorch.org/models/vit_b_16-c867db91.pth (torchvision "
    "ViT_B_16_Weights.IMAGENET1K_V1)"
)


class TorchvisionViTTeacher(Teacher):
    def __init__(self, *, image_size: int | None = None, arch: Mapping[str, Any] | None = None):
        vision_transformer = import_optional("torchvision.models.vision_transformer")
        sizes = {**VIT_B_16, **(arch or {})}
        image_size = image_size or NATIVE_SIZE
        network = vision_transformer.VisionTransformer(image_size=image_size, **sizes)
        super().__init__(
            network,
            name="vit",
            dim=sizes["hidden_dim"],
            patch_size=sizes["patch_size"],
            image_size=image_size,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        )

    def extract(self, x: Tensor) -> Tensor:
        network = self.network
        tokens = network._process_input(x)  # (B, h*w, C): patch projection, raster order
        cls = network.class_token.expand(tokens.shape[0], -1, -1)  # (B, 1, C)
        tokens = network.encoder(torch.cat([cls, tokens], dim=1))  # (B, 1 + h*w, C)
        patches = tokens[:, 1:]  # (B, h*w, C): the patch tokens, not [:, :-1]
        return tokens_to_grid(patches, x.shape[-2] // self.patch_size)  # (B, C, h, w)

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        if "encoder.pos_embedding" not in state:
            return state  # let the strict load report what is missing
        vision_transformer = import_optional("torchvision.models.vision_transformer")
        resized = vision_transformer.interpolate_embeddings(
            self.image_size, self.patch_size, OrderedDict(state), interpolation_mode="bicubic"
        )
        return dict(resized)


def build(
    *,
    with_projection: bool | None = None,
    image_size: int | None = None,
    arch: Mapping[str, Any] | None = None,
) -> Teacher:
    no_projection("vit", with_projection)
    return TorchvisionViTTeacher(image_size=image_size, arch=arch)


SPEC = TeacherSpec(build, PRETRAINED_DIR / "vit.pth", SOURCE)
