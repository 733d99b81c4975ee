"""Cluster: a frozen image-understanding encoder turned into a tokenizer by a codebook.

    original_image (B, 3, H, W) uint8
      -> teacher    frozen, e.g. CLIP ViT-B/16 w/o projection at 256 px   (B, 768, 16, 16)
      -> quantizer  8192 x 768, cosine search, uniform init                (B, h, w) ids

The connector between the two is the identity, so the codebook lives in the teacher's own
feature space. Only the codebook learns: a codebook loss MSE(e, sg(x)) pulls each code
towards the features assigned to it (online, gradient-based clustering) and CVQ-VAE pulls
unused codes towards the nearest features of the global batch (anchors gathered from all
ranks). There is no commitment loss, since the encoder is frozen.

The teacher sees the dataset's ``original_image`` (uint8) with its own normalisation at its
own resolution, so the token grid depends on the teacher config (``image_size`` /
patch size), not on the input size. The teacher is held outside the module tree: state
dicts, optimizers and DDP/FSDP see only the codebook.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from vq.core.config import Config
from vq.core.errors import UserError
from vq.tokenizers.quantizers import QuantizerOutput, VectorQuantizer, VectorQuantizerConfig
from vq.tokenizers.teachers import TeacherConfig, build_teacher


class ClusterConfig(Config):
    teacher: TeacherConfig = Field(
        default_factory=lambda: TeacherConfig(name="clip", with_projection=False, image_size=256)
    )
    quantizer: VectorQuantizerConfig = Field(
        default_factory=lambda: VectorQuantizerConfig.preset("cluster", 8192, 768)
    )


def to_uint8(image: Tensor) -> Tensor:
    """[-1, 1] float images back to the 0-255 uint8 images they were made from.

    Datasets make ``image = original / 127.5 - 1``; rounding inverts that exactly.
    """
    return ((image.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


class ClusterTokenizer(nn.Module):
    def __init__(self, config: ClusterConfig) -> None:
        super().__init__()
        self.config = config
        self.teacher = build_teacher(config.teacher)  # frozen, outside the module tree
        self.quantizer = VectorQuantizer(config.quantizer)
        if self.teacher.dim != self.quantizer.dim:
            raise UserError(
                f"cluster: quantizer.dim is {self.quantizer.dim} but teacher "
                f"{config.teacher.name!r} gives {self.teacher.dim}-d features; set "
                f".model.quantizer.dim to {self.teacher.dim}"
            )

    @property
    def num_codes(self) -> int:
        return self.quantizer.num_codes

    def grid_size(self, image_size: int | tuple[int, int]) -> tuple[int, int]:
        """Token grid ``(h, w)``: the teacher's, whatever ``image_size`` (it resizes)."""
        side = self.teacher.grid_size
        return side, side

    def features(self, original_image: Tensor) -> Tensor:
        """uint8 ``(B, 3, H, W)`` -> teacher features ``(B, D, h, w)`` (no gradient)."""
        return self.teacher(original_image)

    def forward(self, original_image: Tensor) -> QuantizerOutput:
        """The training pass on uint8 images: codes, ids, codebook loss and statistics."""
        return self.quantizer(self.features(original_image))

    def encode(self, image: Tensor) -> Tensor:  # (B, 3, H, W) in [-1, 1] -> (B, h, w) int64
        """Tokens of ``image``; changes no state (safe on one rank, in eval or train mode)."""
        return self.quantizer.indices(self.features(to_uint8(image)))

    def codes(self, indices: Tensor) -> Tensor:  # (B, h, w) -> (B, D, h, w)
        """The code vectors of ``indices``, in the teacher's feature space."""
        return self.quantizer.codes(indices)
