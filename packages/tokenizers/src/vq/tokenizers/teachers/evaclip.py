"""EVA02-CLIP-B/16 image tower (EVA-CLIP, merged-2B data): 768-d patch tokens after the
final norm.

The reference's (since deleted) ``EVACLIPTeacher`` took ``visual.forward_features``,
i.e. unprojected tokens, and its decoder predicted 768 channels; ``with_projection=True``
gives the 512-d CLIP-space tokens instead. EVA02 uses rotary position embeddings, which
timm recomputes for any input grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vq.tokenizers.teachers.base import PRETRAINED_DIR, Teacher, TeacherSpec
from vq.tokenizers.teachers.timm_vit import TimmViTTeacher

MODEL = "eva02_base_patch16_clip_224.merged2b"
SOURCE = (
    "https://huggingface.co/timm/eva02_base_patch16_clip_224.merged2b (model.safetensors: "
    "EVA02-CLIP-B-16, merged2b_s8b_b131k)"
)


def build(
    *,
    with_projection: bool | None = None,
    image_size: int | None = None,
    arch: Mapping[str, Any] | None = None,
) -> Teacher:
    return TimmViTTeacher(
        MODEL,
        name="evaclip",
        with_projection=bool(with_projection),
        image_size=image_size,
        arch=arch,
    )


SPEC = TeacherSpec(build, PRETRAINED_DIR / "evaclip.safetensors", SOURCE)
