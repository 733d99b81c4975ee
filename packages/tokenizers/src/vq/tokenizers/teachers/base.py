"""The frozen-teacher interface shared by VQ-KD (distillation targets) and Cluster (encoder).

A ``Teacher`` turns the dataset's ``original_image`` (uint8, 0-255) into a grid of patch
features ``(B, dim, h, w)``: it normalises with its network's own mean/std (on the 0-255
scale), resizes bicubically to its input resolution, runs the network under ``no_grad``
and returns the *patch* tokens (never the cls token) laid out on their grid.

Frozen means more than ``requires_grad_(False)``. The network is held **outside the module
tree** (in ``__dict__``, not as a submodule), so that a parent model

* never saves it in, nor expects it from, a checkpoint (``state_dict``/``load_state_dict``),
* never hands it to an optimizer, DDP or FSDP (``parameters()``),
* never re-initialises it (``apply(init_fn)``) nor unfreezes it (``requires_grad_()``),
* never switches it to training mode (``train()``: dropout, batch-norm statistics),

while ``.to(device/dtype)``, ``.cuda()`` and ``.half()`` still reach it (``_apply`` is
forwarded). The teacher itself holds no parameters or buffers.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, Self

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vq.core.errors import UserError

PRETRAINED_DIR = Path("pretrained/teachers")

INSTALL_HINT = "run `uv sync --extra teachers` (or `pip install vq-tokenizers[teachers]`)"


def import_optional(module: str) -> ModuleType:
    """Import an optional dependency of the teachers (timm, torchvision) on first use."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise UserError(
            f"the pretrained teachers need the optional package {module!r}: {INSTALL_HINT}"
        ) from error


def read_state_dict(path: Path, *, teacher: str, source: str) -> dict[str, Tensor]:
    """A state dict from a ``.safetensors`` file or a ``torch.save`` file (read with
    ``weights_only=True``); a checkpoint that wraps it under ``model`` or ``state_dict``
    (as MAE's and many training scripts' do) is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"teacher {teacher!r}: weights file {path} not found (looked in "
            f"{path.resolve().parent}); get the checkpoint from {source} and save it as "
            f"{path}, or point the teacher config's `weights` at it"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file is the user's to fix
        raise UserError(f"teacher {teacher!r}: cannot read weights file {path}: {error}") from error
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise UserError(
            f"teacher {teacher!r}: {path} holds a {type(state).__name__}, not a state dict"
        )
    return dict(state)


class Teacher(nn.Module, ABC):
    """A frozen network: ``forward(original_image (B, 3, H, W) uint8) -> (B, dim, h, w)``.

    Subclasses build the network and implement ``extract`` (normalised images at
    ``image_size`` to the feature grid); they may override ``convert_state_dict`` to accept
    checkpoints in the network's original layout.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        name: str,
        dim: int,
        patch_size: int,
        image_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise UserError(
                f"teacher {name!r}: image_size {image_size} is not a multiple of its patch "
                f"size {patch_size}"
            )
        network.requires_grad_(False).eval()
        self.__dict__["_network"] = network  # not a submodule: see the module docstring
        self.name = name
        self.dim = dim
        self.patch_size = patch_size
        self.image_size = image_size
        # Per-channel statistics of the 0-255 scale, kept as Python floats (not buffers) so
        # that normalisation always happens in fp32, whatever dtype the network is cast to.
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.training = False

    @property
    def network(self) -> nn.Module:
        return self.__dict__["_network"]

    @property
    def grid_size(self) -> int:
        """Side of the feature grid that ``forward`` returns."""
        return self.image_size // self.patch_size

    def train(self, mode: bool = True) -> Self:
        """Always evaluation mode: a parent's ``.train()`` must not reach a frozen teacher."""
        self.network.eval()
        return super().train(False)

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> Self:
        # `.to()`, `.cuda()`, `.half()`, `.to_empty()` ... all funnel through `_apply`.
        self.network._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def preprocess(self, original_image: Tensor) -> Tensor:
        """uint8 ``(B, 3, H, W)`` -> normalised float ``(B, 3, S, S)`` at ``image_size``.

        Normalisation is affine per channel and bicubic weights sum to one, so the two
        commute; normalising first matches the reference.
        """
        x = original_image.float()
        mean = x.new_tensor(self.mean).view(1, 3, 1, 1)
        std = x.new_tensor(self.std).view(1, 3, 1, 1)
        x = (x - mean) / std
        size = (self.image_size, self.image_size)
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
        dtype = next(self.network.parameters()).dtype
        return x.to(dtype)

    @torch.no_grad()
    def forward(self, original_image: Tensor) -> Tensor:
        if original_image.dtype != torch.uint8:
            raise TypeError(
                f"teacher {self.name!r} expects uint8 original_image, got {original_image.dtype}"
            )
        return self.extract(self.preprocess(original_image))

    @abstractmethod
    def extract(self, x: Tensor) -> Tensor:
        """Normalised ``(B, 3, S, S)`` -> patch features ``(B, dim, S/p, S/p)``."""

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Map a checkpoint onto the network's parameter names (identity by default)."""
        return state

    def load_weights(self, path: Path, *, source: str) -> Self:
        """Load the network's weights from a local file; ``source`` says where the real
        checkpoint comes from and is quoted when the file is missing."""
        return self.load_checkpoint(read_state_dict(path, teacher=self.name, source=source), path)

    def load_checkpoint(self, state: dict[str, Tensor], origin: Path | str) -> Self:
        """Load a state dict read from ``origin`` (named in errors), strictly."""
        state = self.convert_state_dict(state)
        try:
            missing, unexpected = self.network.load_state_dict(state, strict=False)
        except RuntimeError as error:  # shape mismatches: a checkpoint of another model
            raise UserError(f"teacher {self.name!r}: {origin} does not fit: {error}") from error
        if missing or unexpected:
            raise UserError(
                f"teacher {self.name!r}: {origin} does not fit the network: "
                f"{len(missing)} missing keys {sorted(missing)[:5]}, "
                f"{len(unexpected)} unexpected keys {sorted(unexpected)[:5]}"
            )
        self.network.eval()
        return self

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, network={type(self.network).__name__}, dim={self.dim}, "
            f"patch_size={self.patch_size}, image_size={self.image_size}, frozen"
        )


def tokens_to_grid(tokens: Tensor, height: int) -> Tensor:
    """Patch tokens ``(B, h*w, C)`` in raster order to a feature map ``(B, C, h, w)``."""
    return rearrange(tokens, "b (h w) c -> b c h w", h=height)


class Builder(Protocol):
    """Makes a teacher with random weights.

    ``None`` everywhere gives the real architecture at its native resolution and with its
    default features; ``arch`` overrides architecture hyper-parameters (tests build
    shrunken networks of the same class with it).
    """

    def __call__(
        self,
        *,
        with_projection: bool | None = None,
        image_size: int | None = None,
        arch: Mapping[str, Any] | None = None,
    ) -> Teacher: ...


@dataclass(frozen=True)
class TeacherSpec:
    """A registry entry: how to build a teacher and where its real weights come from."""

    build: Builder
    default_weights: Path
    source: str


def no_projection(name: str, with_projection: bool | None) -> None:
    """Reject ``with_projection=True`` for a teacher whose features have no projection."""
    if with_projection:
        raise UserError(
            f"teacher {name!r} has no projection head: leave with_projection unset or False"
        )
