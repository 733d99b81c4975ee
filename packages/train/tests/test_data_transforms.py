"""The four reference pipelines and the uint8 <-> float conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vq.core.errors import UserError
from vq.train.data import build_transform, to_float, to_uint8
from vq.train.data.transforms import AUGMENTATIONS


def textured_image(width: int = 120, height: int = 90, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_output_is_uint8_square_plain_tensor(augmentation):
    out = build_transform(augmentation, 32)(textured_image())
    assert type(out) is torch.Tensor
    assert out.dtype == torch.uint8
    assert out.shape == (3, 32, 32)
    image = to_float(out)
    assert image.dtype == torch.float32
    assert image.min() >= -1
    assert image.max() <= 1


@pytest.mark.parametrize("augmentation", ["default", "strong", "weak"])
def test_random_pipelines_are_reproducible_under_a_seed(augmentation):
    transform = build_transform(augmentation, 32)
    image = textured_image()

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return transform(image)

    assert torch.equal(run(1), run(1))
    assert any(not torch.equal(run(1), run(seed)) for seed in range(2, 6))


def test_none_is_deterministic_and_matches_pil_resize_then_centre_crop():
    image = textured_image(width=160, height=80)  # short side 80 -> 32: width 64
    transform = build_transform("none", 32)
    torch.manual_seed(0)
    first = transform(image)
    torch.manual_seed(1)
    assert torch.equal(first, transform(image))
    expected = np.array(image.resize((64, 32), Image.Resampling.BICUBIC))[:, 16:48]
    assert torch.equal(first, torch.from_numpy(expected).permute(2, 0, 1))


def test_weak_is_a_window_of_the_resized_image_possibly_flipped():
    image = textured_image(width=160, height=80)
    resized = torch.from_numpy(np.array(image.resize((64, 32), Image.Resampling.BICUBIC)))
    resized = resized.permute(2, 0, 1)  # (3, 32, 64)
    torch.manual_seed(3)
    out = build_transform("weak", 32)(image)
    windows = [resized[:, :, x : x + 32] for x in range(33)]
    assert any(torch.equal(out, w) or torch.equal(out, w.flip(-1)) for w in windows)


def test_unknown_augmentation_and_bad_size_are_user_errors():
    with pytest.raises(UserError, match="unknown augmentation"):
        build_transform("medium", 32)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="image_size"):
        build_transform("none", 0)


def test_to_float_endpoints_and_round_trip():
    levels = torch.arange(256, dtype=torch.uint8)
    image = to_float(levels)
    assert image[0] == -1
    assert image[-1] == 1
    assert torch.equal(to_uint8(image), levels)


def test_to_uint8_rounds_and_clamps():
    values = torch.tensor([-3.0, -1.0, 1.0, 5.0, 0.5 / 127.5 - 1 + 1e-4, 0.49 / 127.5 - 1])
    assert to_uint8(values).tolist() == [0, 0, 255, 255, 1, 0]


def test_to_float_rejects_float_input():
    with pytest.raises(TypeError, match="uint8"):
        to_float(torch.zeros(3))
