"""The convolutional trunk of VGG16 up to relu5_3, frozen, with torchvision's layer indices.

LPIPS only needs the activations after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, so
the last max-pool and the classifier are not built (the reference ran the whole network).
The layers sit at torchvision's indices of ``vgg16().features`` (conv at 0, 2, 5, 7, ...),
so the weights are named ``features.{idx}.weight/bias`` and a torchvision VGG16 state
dict file loads as it is.

The weights are *non-persistent buffers*, not parameters: a frozen feature extractor must
not be trained, counted, wrapped by DDP/FSDP or written into checkpoints, and buffers that
are non-persistent are none of these while still following ``.to(device, dtype)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vq.core.errors import UserError

# (in, out, number of 3x3 convs) of VGG16's five blocks; a 2x2 max-pool separates blocks.
_BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))

# Indices (into `features`) of the ReLUs LPIPS taps: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
TAPS = (3, 8, 15, 22, 29)
TAP_CHANNELS = (64, 128, 256, 512, 512)

VGG16_HOW_TO = (
    "save torchvision's ImageNet VGG16 weights there, on a machine with internet access: "
    'python -c "import torch, torchvision; torch.save(torchvision.models.vgg16('
    "weights='IMAGENET1K_V1').state_dict(), 'vgg16.pth')\""
)


class FrozenConv2d(nn.Module):
    """A 3x3 same-padded convolution whose weights are non-persistent buffers."""

    weight: Tensor
    bias: Tensor

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.empty(out_channels, in_channels, 3, 3), False)
        self.register_buffer("bias", torch.empty(out_channels), False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=1)

    def extra_repr(self) -> str:
        out_channels, in_channels = self.weight.shape[:2]
        return f"{in_channels}, {out_channels}, kernel_size=3, padding=1, frozen"


class VGG16Features(nn.Module):
    """``forward(x)`` returns the five LPIPS taps of a (normalised) image batch."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for block, (in_channels, out_channels, convs) in enumerate(_BLOCKS):
            if block:
                layers.append(nn.MaxPool2d(2, 2))
            for i in range(convs):
                layers.append(FrozenConv2d(in_channels if i == 0 else out_channels, out_channels))
                # In place is safe: no tapped output is ever the input of an in-place op.
                layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)

    def load_weights(self, state_dict: Mapping[str, Tensor], source: Path) -> None:
        """Copy ``features.{idx}.weight/bias`` from a torchvision VGG16 state dict (other keys,
        the classifier's, are ignored)."""
        for name, buffer in self.named_buffers():
            if name not in state_dict:
                raise UserError(f"{source}: no key {name!r}; is it a torchvision VGG16 state dict?")
            value = state_dict[name]
            if value.shape != buffer.shape:
                raise UserError(
                    f"{source}: {name!r} has shape {tuple(value.shape)}, "
                    f"expected {tuple(buffer.shape)} (VGG16)"
                )
            with torch.no_grad():
                buffer.copy_(value)

    def forward(self, x: Tensor) -> list[Tensor]:  # (B, 3, H, W) -> 5 x (B, C_l, H_l, W_l)
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAPS:
                taps.append(x)
        return taps
