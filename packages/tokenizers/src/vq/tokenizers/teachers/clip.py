"""OpenAI CLIP ViT-B/16 image tower: VQ-KD's main teacher and Cluster's encoder.

* ``with_projection=True`` (VQ-KD, the default): patch tokens after ``ln_post`` and the
  image projection ``@ proj``, 512-d, i.e. in CLIP's joint image-text space.
* ``with_projection=False`` (Cluster): patch tokens after ``ln_post``, 768-d.

The original tower uses QuickGELU, hence timm's ``quickgelu`` variant. The real weights
are timm's conversion of OpenAI's checkpoint; an ``open_clip_pytorch_model.bin`` of the
same model also loads (``visual.*`` keys are mapped). OpenAI's own ``ViT-B-16.pt`` is a
TorchScript archive that ``weights_only`` loading refuses: convert it once with open_clip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vq.tokenizers.teachers.base import PRETRAINED_DIR, Teacher, TeacherSpec
from vq.tokenizers.teachers.timm_vit import TimmViTTeacher

MODEL = "vit_base_patch16_clip_quickgelu_224.openai"
SOURCE = (
    "https://huggingface.co/timm/vit_base_patch16_clip_224.openai (model.safetensors: "
    "OpenAI CLIP ViT-B/16)"
)


def build(
    *,
    with_projection: bool | None = None,
    image_size: int | None = None,
    arch: Mapping[str, Any] | None = None,
) -> Teacher:
    return TimmViTTeacher(
        MODEL,
        name="clip",
        with_projection=True if with_projection is None else with_projection,
        image_size=image_size,
        arch=arch,
    )


SPEC = TeacherSpec(build, PRETRAINED_DIR / "clip.safetensors", SOURCE)
