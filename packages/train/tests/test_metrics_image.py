"""Per-image metrics against scikit-image on real photographs (crops with noise and blur)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data, filters
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vq.train.metrics import l1, mse, psnr, reconstruction_metrics, ssim, to_unit_range


def _crop(image: np.ndarray, top: int, left: int, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 photograph -> (3, h, w) float64 crop in [0, 1]."""
    h, w = size
    return image[top : top + h, left : left + w].transpose(2, 0, 1) / 255.0


@pytest.fixture(scope="module")
def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (4, 3, 40, 56) from two photos and degraded predictions: noise, blur, both."""
    rng = np.random.default_rng(0)
    astronaut, chelsea = data.astronaut(), data.chelsea()
    targets = np.stack(
        [
            _crop(astronaut, 60, 200, (40, 56)),
            _crop(astronaut, 300, 120, (40, 56)),
            _crop(chelsea, 100, 150, (40, 56)),
            _crop(chelsea, 30, 300, (40, 56)),
        ]
    )
    noisy = targets + rng.normal(0.0, 0.08, targets.shape)
    blurred = np.stack([filters.gaussian(t, sigma=1.5, channel_axis=0) for t in targets])
    preds = np.stack([noisy[0], blurred[1], blurred[2] + (noisy[2] - targets[2]), noisy[3]])
    preds = np.clip(preds, 0.0, 1.0)
    return torch.from_numpy(preds), torch.from_numpy(targets)


def test_ssim_matches_skimage(pairs):
    preds, targets = pairs
    ours = ssim(preds, targets)
    assert ours.shape == (4,)
    for i in range(4):
        expected = structural_similarity(
            preds[i].numpy(), targets[i].numpy(), channel_axis=0, data_range=1
        )
        assert ours[i].item() == pytest.approx(expected, abs=1e-4)
    # Degradations of different strength spread SSIM widely, so the comparison is not vacuous.
    assert ours.max() < 0.95
    assert ours.min() < 0.5


def test_psnr_l1_mse_match_skimage_and_numpy(pairs):
    preds, targets = pairs
    ours = psnr(preds, targets)
    for i in range(4):
        p, t = preds[i].numpy(), targets[i].numpy()
        assert ours[i].item() == pytest.approx(
            peak_signal_noise_ratio(t, p, data_range=1), abs=1e-4
        )
        assert l1(preds, targets)[i].item() == pytest.approx(np.abs(p - t).mean(), abs=1e-12)
        assert mse(preds, targets)[i].item() == pytest.approx(((p - t) ** 2).mean(), abs=1e-12)


def test_identical_images():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    assert torch.isinf(psnr(x, x)).all()
    assert (l1(x, x) == 0).all()


def test_same_numbers_under_autocast(pairs):
    preds, targets = (t.float() for t in pairs)
    plain = [f(preds, targets) for f in (l1, mse, psnr, ssim)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = [f(preds, targets) for f in (l1, mse, psnr, ssim)]
    for a, b in zip(plain, cast):
        assert b.dtype == torch.float64
        assert torch.equal(a, b)


def test_reconstruction_metrics_on_uint8(pairs):
    preds, targets = ((t * 255).round().to(torch.uint8) for t in pairs)
    metrics = reconstruction_metrics(preds, targets)
    assert set(metrics) == {"l1_image_loss", "mse_image_loss", "psnr", "ssim"}
    p01, t01 = preds.double() / 255, targets.double() / 255
    assert torch.equal(metrics["ssim"], ssim(p01, t01))
    assert torch.equal(metrics["mse_image_loss"], mse(p01, t01))
    expected = structural_similarity(p01[2].numpy(), t01[2].numpy(), channel_axis=0, data_range=1)
    assert metrics["ssim"][2].item() == pytest.approx(expected, abs=1e-4)


def test_rejects_bad_inputs():
    with pytest.raises(TypeError):
        to_unit_range(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(torch.rand(1, 3, 6, 8), torch.rand(1, 3, 6, 8))
