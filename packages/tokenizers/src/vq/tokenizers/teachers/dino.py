"""DINO ViT-B/16 (self-distilled on ImageNet): 768-d patch tokens after the final norm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vq.tokenizers.teachers.base import PRETRAINED_DIR, Teacher, TeacherSpec, no_projection
from vq.tokenizers.teachers.timm_vit import TimmViTTeacher

MODEL = "vit_base_patch16_224.dino"
SOURCE = (
    "https://huggingface.co/timm/vit_base_patch16_224.dino (model.safetensors), or the "
    "original https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/"
    "dino_vitbase16_pretrain.pth"
)


def build(
    *,
    with_projection: bool | None = None,
    image_size: int | None = None,
    arch: Mapping[str, Any] | None = None,
) -> Teacher:
    no_projection("dino", with_projection)
    return TimmViTTeacher(
        MODEL, name="dino", with_projection=False, image_size=image_size, arch=arch
    )


SPEC = TeacherSpec(build, PRETRAINED_DIR / "dino.safetensors", SOURCE)
