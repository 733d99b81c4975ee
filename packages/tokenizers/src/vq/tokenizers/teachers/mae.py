"""MAE ViT-B/16 encoder (masked-autoencoder pre-training): 768-d patch tokens after the
final norm.

The reference's MAE copy asserted 224 px inputs; timm's ViT resamples its position
embeddings (bicubic), so this teacher also runs at 256 px for Cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vq.tokenizers.teachers.base import PRETRAINED_DIR, Teacher, TeacherSpec, no_projection
from vq.tokenizers.teachers.timm_vit import TimmViTTeacher

MODEL = "vit_base_patch16_224.mae"
SOURCE = (
    "https://huggingface.co/timm/vit_base_patch16_224.mae (model.safetensors), or the "
    "original https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth"
)


def build(
    *,
    with_projection: bool | None = None,
    image_size: int | None = None,
    arch: Mapping[str, Any] | None = None,
) -> Teacher:
    no_projection("mae", with_projection)
    return TimmViTTeacher(
        MODEL, name="mae", with_projection=False, image_size=image_size, arch=arch
    )


SPEC = TeacherSpec(build, PRETRAINED_DIR / "mae.safetensors", SOURCE)
