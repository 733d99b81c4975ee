"""LPIPS (Zhang et al. 2018), VGG16 variant: a learned perceptual distance between images.

For images in [-1, 1]::

    x  -> (x - shift) / scale                       (maps to ImageNet statistics)
       -> VGG16 activations after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
       -> per position, divide by the channel L2 norm (+ 1e-10)
    d_l = (f_l(x) - f_l(y))^2                       (B, C_l, H_l, W_l)
    LPIPS(x, y) = sum_l mean_{h,w} lin_l(d_l)       lin_l: 1x1 conv C_l -> 1, no bias

Two weight files, both read from disk (nothing is downloaded):

* the torchvision VGG16 ``IMAGENET1K_V1`` state dict (default ``pretrained/lpips/vgg16.pth``);
* the LPIPS "lin" heads (``lin{i}.model.1.weight``), the ``lpips`` package's
  ``lpips/weights/v0.1/vgg.pth``: taken from the installed package when there is one,
  else from ``pretrained/lpips/vgg_lin.pth``.

The module is frozen and holds no parameters and nothing persistent: ``parameters()`` and
``state_dict()`` are empty, ``load_state_dict`` expects nothing from it, so it is never
trained, wrapped by DDP/FSDP or saved in a checkpoint, and it always computes from the
files it was built with. It stays in eval mode; the reference's dropout (p = 0.5 on the
squared differences, active in training) is available as ``dropout`` and off by default.

The VGG trunk runs under whatever autocast is active; normalisation, differences and the
heads run in fp32.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path
from typing import Any, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from vq.core.amp import float32, fp32_region
from vq.core.config import Config
from vq.core.errors import UserError
from vq.tokenizers.losses.vgg16 import TAP_CHANNELS, VGG16_HOW_TO, VGG16Features

# The "scaling layer" of LPIPS: (x - shift) / scale maps [-1, 1] images to the statistics
# VGG16 was trained on.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10

DEFAULT_VGG_PATH = Path("pretrained/lpips/vgg16.pth")
LOCAL_LIN_PATH = Path("pretrained/lpips/vgg_lin.pth")
LIN_HOW_TO = (
    "copy lpips/weights/v0.1/vgg.pth from the `lpips` package (pip install lpips; "
    "https://github.com/richzhang/PerceptualSimilarity) there"
)


def default_lin_path() -> Path:
    """The ``lpips`` package's v0.1 VGG heads if it is installed, else ``LOCAL_LIN_PATH``.

    ``find_spec`` locates the package without importing it (importing ``lpips`` would pull
    in torchvision).
    """
    spec = importlib.util.find_spec("lpips")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "weights" / "v0.1" / "vgg.pth"
        if candidate.is_file():
            return candidate
    return LOCAL_LIN_PATH


class LPIPSConfig(Config):
    vgg_path: Path = Field(DEFAULT_VGG_PATH, description="torchvision VGG16 state dict file")
    lin_path: Path | None = Field(None, description="LPIPS lin heads; None: see default_lin_path")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the differences")


def load_state_dict_file(path: Path, what: str, how_to: str) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with a ``UserError`` naming the file when it
    is missing or unreadable."""
    if not path.is_file():
        raise UserError(f"{what} not found: expected the file {path.resolve()}; {how_to}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as error:
        raise UserError(f"{path}: cannot read {what} ({error})") from error
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


class LPIPS(nn.Module):
    """``LPIPS()(x, y)`` -> ``(B,)`` distances between two ``(B, 3, H, W)`` batches in [-1, 1]."""

    shift: Tensor
    scale: Tensor

    def __init__(self, config: LPIPSConfig | None = None) -> None:
        super().__init__()
        config = config or LPIPSConfig()
        self.dropout = config.dropout
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), False)

        self.vgg = VGG16Features()
        vgg_state = load_state_dict_file(config.vgg_path, "LPIPS VGG16 weights", VGG16_HOW_TO)
        self.vgg.load_weights(vgg_state, config.vgg_path)

        lin_path = config.lin_path or default_lin_path()
        lin_state = load_state_dict_file(lin_path, "LPIPS lin weights", LIN_HOW_TO)
        for i, channels in enumerate(TAP_CHANNELS):
            key = f"lin{i}.model.1.weight"
            weight = lin_state.get(key)
            if weight is None or weight.shape != (1, channels, 1, 1):
                found = None if weight is None else tuple(weight.shape)
                raise UserError(
                    f"{lin_path}: expected {key!r} of shape (1, {channels}, 1, 1), found {found} "
                    "(the lpips package's weights/v0.1/vgg.pth has it)"
                )
            self.register_buffer(f"lin{i}", weight.float().clone(), False)
        self.train(False)

    def train(self, mode: bool = True) -> Self:
        """Always eval mode, except that the optional dropout follows ``mode``."""
        return super().train(mode and self.dropout > 0)

    def heads(self) -> list[Tensor]:
        return [getattr(self, f"lin{i}") for i in range(len(TAP_CHANNELS))]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # 2 x (B, 3, H, W) -> (B,)
        b = input.shape[0]
        images = torch.cat([input, target])  # (2B, 3, H, W): one pass through the trunk
        taps = self.vgg((images - self.shift) / self.scale)  # 5 x (2B, C_l, H_l, W_l)
        with fp32_region():
            distances = []
            for tap, head in zip(taps, self.heads()):
                tap = float32(tap)  # fp32 (or fp64 if the module was made so)
                tap = tap / (tap.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS)
                diff = (tap[:b] - tap[b:]).pow(2)  # (B, C_l, H_l, W_l)
                if self.dropout:
                    diff = F.dropout(diff, self.dropout, self.training)
                layer = F.conv2d(diff, head.to(diff.dtype))  # (B, 1, H_l, W_l)
                distances.append(layer.mean(dim=(1, 2, 3)))
        return torch.stack(distances).sum(dim=0)  # (B,)
