"""Per-image reconstruction metrics: L1, MSE, PSNR and SSIM.

All metrics compare a batch of predictions with a batch of targets, both ``(B, 3, H, W)`` in
``[0, 1]``, and return one value per image ``(B,)``; validators average them over the whole
set after gathering, so every image weighs the same whatever the batch or rank it came in.

Following the reference recipes, images are first decoded to uint8 (what a user would save
as a PNG) and divided by 255; ``reconstruction_metrics`` does that for uint8 inputs. The
arithmetic runs in float64 outside autocast, so the numbers are the same under ``--autocast``
and agree with scikit-image to ~1e-12 (``peak_signal_noise_ratio`` with ``data_range=1``
and ``structural_similarity(pred, gt, channel_axis=0, data_range=1)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vq.core.amp import fp32_region

# scikit-image's SSIM defaults (Wang et al. 2004 constants, uniform window, sample covariance).
SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _as_float64(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(
            f"expected two (B, C, H, W) batches of the same shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    return pred.double(), target.double()


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(B, C, H, W)`` in [0, 255] as float64 in [0, 1]."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return images.double() / 255.0


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of each image ``(B,)``."""
    with fp32_region():
        pred, target = _as_float64(pred, target)
        return (pred - target).abs().flatten(1).mean(dim=1)


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each image ``(B,)``."""
    with fp32_region():
        pred, target = _as_float64(pred, target)
        return (pred - target).square().flatten(1).mean(dim=1)


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each image in dB ``(B,)``; ``inf`` for identical images.

    Computed per image and averaged by the caller (not from the mean MSE of the set), as the
    reference does.
    """
    return 10.0 * torch.log10(data_range**2 / mse(pred, target))


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity of each image ``(B,)``, as scikit-image computes it.

    Per channel: local means, variances and covariance over a 7x7 uniform window, with the
    sample-covariance factor N/(N-1) (N = 49); the SSIM map is averaged over the positions
    where the window lies fully inside the image (scikit-image filters the whole image with
    reflected borders, then crops 3 pixels on each side before the mean, which leaves exactly
    these positions); channels are averaged last.
    """
    with fp32_region():
        pred, target = _as_float64(pred, target)  # (B, C, H, W)
        if min(pred.shape[-2:]) < SSIM_WINDOW:
            raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels")

        def window_mean(x: torch.Tensor) -> torch.Tensor:
            return F.avg_pool2d(x, SSIM_WINDOW, stride=1)  # (B, C, H-6, W-6)

        n = SSIM_WINDOW**2
        cov_norm = n / (n - 1)
        mu_x, mu_y = window_mean(pred), window_mean(target)
        var_x = cov_norm * (window_mean(pred * pred) - mu_x * mu_x)
        var_y = cov_norm * (window_mean(target * target) - mu_y * mu_y)
        cov_xy = cov_norm * (window_mean(pred * target) - mu_x * mu_y)

        c1 = (SSIM_K1 * data_range) ** 2
        c2 = (SSIM_K2 * data_range) ** 2
        numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
        denominator = (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)
        ssim_map = numerator / denominator  # (B, C, H-6, W-6)
        return ssim_map.mean(dim=(2, 3)).mean(dim=1)  # (B,)


def reconstruction_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """All per-image metrics of two uint8 batches ``(B, 3, H, W)``, named as in the reference.

    Returns ``l1_image_loss``, ``mse_image_loss``, ``psnr`` and ``ssim``, each ``(B,)`` float64.
    """
    pred01, target01 = to_unit_range(pred), to_unit_range(target)
    return {
        "l1_image_loss": l1(pred01, target01),
        "mse_image_loss": mse(pred01, target01),
        "psnr": psnr(pred01, target01),
        "ssim": ssim(pred01, target01),
    }
