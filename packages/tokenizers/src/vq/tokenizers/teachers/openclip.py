"""OpenCLIP ViT-L/14, ViT-H/14 and ViT-bigG/14 image towers trained on LAION-2B.

Features are the patch tokens after ``ln_post`` and the image projection, as the
reference's (since deleted) ``OpenCLIPTeacher`` took them (``pool_type='none'``,
``encode_image(x)[:, 1:]``): 768-d (L/14), 1024-d (H/14), 1280-d (bigG/14), on a 16x16
grid at 224 px (patch 14). Without the projection: widths 1024, 1280, 1664.

timm's ``*.laion2b`` tags are conversions of OpenCLIP's ``laion2b_s32b_b82k`` (L/14),
``laion2b_s32b_b79k`` (H/14) and ``laion2b_s39b_b160k`` (bigG/14); OpenCLIP's
``open_clip_pytorch_model.bin`` files load as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from vq.tokenizers.teachers.base import PRETRAINED_DIR, Teacher, TeacherSpec
from vq.tokenizers.teachers.timm_vit import TimmViTTeacher

# teacher name -> timm model name
MODELS = {
    "openclip_L_14": "vit_large_patch14_clip_224.laion2b",
    "openclip_H_14": "vit_huge_patch14_clip_224.laion2b",
    "openclip_bigG_14": "vit_gigantic_patch14_clip_224.laion2b",
}


def build(
    name: str,
    *,
    with_projection: bool | None = None,
    image_size: int | None = None,
    arch: Mapping[str, Any] | None = None,
) -> Teacher:
    return TimmViTTeacher(
        MODELS[name],
        name=name,
        with_projection=True if with_projection is None else with_projection,
        image_size=image_size,
        arch=arch,
    )


SPECS = {
    name: TeacherSpec(
        partial(build, name),
        PRETRAINED_DIR / f"{name}.safetensors",
        f"https://huggingface.co/timm/{model} (model.safetensors)",
    )
    for name, model in MODELS.items()
}
