"""The downstream tokenizer API: load a trained tokenizer, turn images into tokens and back.

This is all a user who only encodes images needs (``pip install vq-tokenizers``)::

    from vq.tokenizers.api import Tokenizer

    tokenizer = Tokenizer.from_pretrained("tokenizers/vqgan_8192", device="cuda")
    ids = tokenizer.encode(images)         # uint8 (B, 3, H, W) or float in [-1, 1] -> (B, h, w)
    recon = tokenizer.decode(ids)          # (B, 3, H, W) float in [-1, 1]
    codes = tokenizer.codes(ids)           # (B, D, h, w) the code vectors

A pretrained directory holds two files:

* ``config.json``: the model kind (``pixel_tokenizer`` for VQGAN / CVQ-VAE / FSQ / LlamaGen,
  ``vqkd`` for VQ-KD, ``cluster`` for Cluster, ``decoded_tokenizer`` for VQ-KD or Cluster
  with its pixel decoder when vq-decoders is installed; see ``vq.tokenizers.kinds``), the
  model config, the image size the tokenizer was trained at, the
  input normalisation, the codebook size, the token grid at that size, and the parts of the
  model whose weights were left out (a VQ-KD without its feature decoder);
* ``model.safetensors``: the weights, no pickles, including frozen networks the model
  needs (Cluster's teacher, under ``teacher.``). Training-only parts (discriminators, LPIPS,
  teachers) are not part of these models and never written.

Such a directory is made by ``save_pretrained``, by ``uv run export`` from a training
checkpoint, or by ``uv run convert`` from a checkpoint of taming-transformers, BEiT v2 or
LlamaGen. Loading checks every weight: a missing, unexpected or mis-shaped tensor is an
error, never a silently random part.

Every call runs without gradients and in eval mode; inputs are moved to the model's device
and dtype. Nothing here imports training code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import pydantic
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from vq.core.config import Config
from vq.core.errors import UserError, few
from vq.core.tensorfiles import read_tensors
from vq.tokenizers.kinds import TokenizerKind, kind_names, kind_of, tokenizer_kind

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "vq-tokenizer"
FORMAT_VERSION = 1
"""The version ``save_pretrained`` writes. A change of the directory layout or of
``config.json`` that an older reader would misread bumps it; the reader keeps accepting
every version in ``READABLE_FORMAT_VERSIONS`` (converting old layouts where they differ)."""
READABLE_FORMAT_VERSIONS = (1,)
NORMALIZATION = "[-1,1]"
"""Float images are ``uint8 / 127.5 - 1``; the only normalisation our tokenizers use."""

HOW_TO_MAKE = (
    "make one with Tokenizer.save_pretrained, `uv run export RUN_DIR OUT_DIR` (from a training "
    "checkpoint) or `uv run convert KIND CHECKPOINT OUT_DIR` (from a public checkpoint)"
)


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise UserError(f"dtype {dtype!r} is not a floating point torch dtype (e.g. 'bfloat16')")
    return resolved


def check_format(description: dict[str, Any], config_file: Path) -> None:
    """Refuse a ``config.json`` that is not ours or whose format version this release of
    vq-tokenizers cannot read (a newer one: upgrade vq-tokenizers)."""
    found, version = description.get("format"), description.get("format_version")
    if found != FORMAT or version not in READABLE_FORMAT_VERSIONS:
        newer = (
            found == FORMAT and isinstance(version, int) and version > max(READABLE_FORMAT_VERSIONS)
        )
        raise UserError(
            f"{config_file} is not a vq tokenizer config this vq-tokenizers reads (format "
            f"{found!r} version {version!r}, expected {FORMAT!r} version "
            f"{' or '.join(map(str, READABLE_FORMAT_VERSIONS))})"
            + ("; it was written by a newer vq-tokenizers: upgrade it" if newer else "")
        )


class Tokenizer:
    """A trained image tokenizer in eval mode: ``encode``, ``decode``, ``codes``.

    ``model`` is a model of an installed kind (``vq.tokenizers.kinds``): a
    ``PixelTokenizer`` (pixels in and out), a ``VQKDTokenizer`` or ``ClusterTokenizer``
    (tokens and code vectors only), or with vq-decoders a ``DecodedTokenizer`` (a VQ-KD or
    Cluster tokenizer with its pixel decoder). ``image_size`` is the resolution the model
    was trained at; other sizes work as long as they are multiples of
    ``downsample_factor`` (ViT encoders interpolate their position embeddings; Cluster's
    teacher resizes every image to its own size).
    """

    def __init__(
        self, model: nn.Module, image_size: int | None = None, omitted: Iterable[str] = ()
    ) -> None:
        self.kind: TokenizerKind = kind_of(model)
        self.model = model.eval().requires_grad_(False)
        self.omitted = tuple(sorted(omitted))
        for part in self.omitted:
            if part not in self.kind.optional_parts:
                raise UserError(
                    f"{self.kind.name}: part {part!r} cannot be left out (optional parts: "
                    f"{list(self.kind.optional_parts)})"
                )
            self.kind.omit(self.model, part)  # a missing part fails loudly, never runs random
        self.image_size = image_size or self.kind.image_size(model)
        self.grid_size(self.image_size)  # a size the model cannot tokenize is an error now

    # ------------------------------------------------------------ properties -------

    @property
    def config(self) -> Config:
        return self.model.config

    @property
    def num_codes(self) -> int:
        return self.model.num_codes

    @property
    def code_dim(self) -> int:
        return self.kind.code_dim(self.model)

    @property
    def downsample_factor(self) -> int:
        """Pixels per token side (1 for Cluster, whose teacher takes any size)."""
        return self.kind.downsample_factor(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def grid_size(self, image_size: int | tuple[int, int] | None = None) -> tuple[int, int]:
        """Token grid ``(h, w)`` of images of ``image_size`` (default: the trained size)."""
        size = self.image_size if image_size is None else image_size
        height, width = (size, size) if isinstance(size, int) else size
        f = self.downsample_factor
        if height <= 0 or width <= 0 or height % f or width % f:
            raise UserError(
                f"image size {height}x{width} is not a positive multiple of the tokenizer's "
                f"downsample factor {f}"
            )
        return self.kind.grid_size(self.model, (height, width))

    def to(self, device: torch.device | str | None = None, dtype: Any = None) -> Self:
        """Move the model (in place) to ``device`` and/or floating ``dtype``; returns self."""
        self.model.to(device=device, dtype=_resolve_dtype(dtype))
        return self

    # ------------------------------------------------------------ tokens -----------

    def _images(self, images: Tensor) -> tuple[Tensor, bool]:
        """uint8 or [-1, 1] float images (B, 3, H, W) or (3, H, W) as model-ready floats."""
        single = images.ndim == 3
        batch = images.unsqueeze(0) if single else images
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise UserError(
                f"images must be (B, 3, H, W) or (3, H, W), got shape {tuple(images.shape)}"
            )
        self.grid_size((batch.shape[-2], batch.shape[-1]))
        batch = batch.to(self.device)
        if batch.dtype == torch.uint8:
            batch = batch.float() / 127.5 - 1.0
        elif batch.is_floating_point():
            low, high = batch.aminmax()
            if low < -1.001 or high > 1.001:
                raise UserError(
                    f"float images must lie in [-1, 1] (uint8 / 127.5 - 1), found values in "
                    f"[{low.item():.3g}, {high.item():.3g}]; pass uint8 images instead"
                )
        else:
            raise UserError(f"images must be uint8 or floating point, got {batch.dtype}")
        return batch.to(self.dtype), single

    def _ids(self, ids: Tensor) -> tuple[Tensor, bool]:
        single = ids.ndim == 2
        batch = ids.unsqueeze(0) if single else ids
        if batch.ndim != 3 or batch.is_floating_point() or batch.is_complex():
            raise UserError(
                f"token ids must be an integer (B, h, w) or (h, w) tensor, got "
                f"{ids.dtype} of shape {tuple(ids.shape)}"
            )
        if batch.numel() and (batch.min() < 0 or batch.max() >= self.num_codes):
            raise UserError(
                f"token ids must lie in [0, {self.num_codes}), found "
                f"[{batch.min().item()}, {batch.max().item()}]"
            )
        return batch.to(self.device, torch.long), single

    def _eval(self) -> None:
        if self.model.training:
            self.model.eval()

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Token ids ``(B, h, w)`` int64 of uint8 or [-1, 1] float images ``(B, 3, H, W)``
        (a single ``(3, H, W)`` image gives ``(h, w)``)."""
        self._eval()
        batch, single = self._images(images)
        ids = self.model.encode(batch)  # (B, h, w)
        return ids[0] if single else ids

    @torch.no_grad()
    def codes(self, ids: Tensor) -> Tensor:
        """The code vectors ``(B, D, h, w)`` of token ids ``(B, h, w)``: what the decoder
        reads (after the quantizer's normalisation, if it has one)."""
        self._eval()
        batch, single = self._ids(ids)
        codes = self.kind.codes(self.model, batch)  # (B, D, h, w)
        return codes[0] if single else codes

    @torch.no_grad()
    def decode(self, ids: Tensor, uint8: bool = False) -> Tensor:
        """Images ``(B, 3, H, W)`` of token ids ``(B, h, w)``: floats clamped to [-1, 1], or
        with ``uint8=True`` the 0-255 images ``round((x + 1) * 127.5)``."""
        if not self.kind.has_pixels:
            raise UserError(
                f"a {self.kind.name} tokenizer has no pixel decoder: use codes(ids) and a pixel "
                "decoder from vq-decoders to get images"
            )
        self._eval()
        batch, single = self._ids(ids)
        # The quantizer hands out fp32 codes; in half precision, autocast feeds them to the
        # decoder's weights in the model's dtype.
        half = self.dtype != torch.float32
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=half):
            images = self.model.decode(batch).clamp(-1.0, 1.0)  # (B, 3, H, W)
        if uint8:
            images = ((images.float() + 1.0) * 127.5).round().to(torch.uint8)
        return images[0] if single else images

    # ------------------------------------------------------------ files ------------

    def describe(self) -> dict[str, Any]:
        """The content of ``config.json``."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind.name,
            "model": json.loads(
                self.kind.storable_config(self.config).model_dump_json(round_trip=True)
            ),
            "image_size": self.image_size,
            "normalization": NORMALIZATION,
            "num_codes": self.num_codes,
            "code_dim": self.code_dim,
            "downsample_factor": self.downsample_factor,
            "grid": list(self.grid_size()),
            "omitted_parts": list(self.omitted),
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``; returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().cpu().clone().contiguous()
            for k, v in self.kind.state_dict(self.model).items()
        }
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
        text = json.dumps(self.describe(), indent=2) + "\n"
        (directory / CONFIG_FILE).write_text(text)
        return directory

    @classmethod
    def from_state(
        cls,
        kind: str,
        config: Config | dict[str, Any],
        state: dict[str, Tensor],
        image_size: int | None = None,
        omitted: Iterable[str] = (),
        source: str = "state dict",
    ) -> Tokenizer:
        """Build a model of ``kind`` from ``config`` and load ``state`` into it strictly:
        every weight of the model, except the ``omitted`` optional parts, must be given with
        its exact shape, and nothing else may be."""
        spec = tokenizer_kind(kind, source)
        try:
            config = spec.config.model_validate(config)
        except pydantic.ValidationError as error:
            raise UserError(f"{source}: invalid {kind} model config: {error}") from None
        model = spec.build(config)
        omitted = tuple(omitted)
        expected = {
            k: v
            for k, v in spec.state_dict(model).items()
            if not any(k.startswith(part + ".") for part in omitted)
        }
        check_state(expected, state, f"{source} does not fit the {kind} model of its config")
        spec.load_state(model, state)  # complete up to the omitted parts
        return cls(model, image_size=image_size, omitted=omitted)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
    ) -> Tokenizer:
        """The tokenizer saved in ``directory`` (see the module docstring), on ``device``
        (default CPU) in ``dtype`` (default: as saved, float32)."""
        directory = Path(directory)
        config_file, weights_file = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for needed in (config_file, weights_file):
            if not needed.is_file():
                raise UserError(
                    f"{needed} not found: {directory} is not a pretrained tokenizer directory; "
                    + HOW_TO_MAKE
                )
        try:
            description = json.loads(config_file.read_text())
        except json.JSONDecodeError as error:
            raise UserError(f"{config_file} is not valid JSON: {error}") from None
        check_format(description, config_file)
        if description.get("normalization") != NORMALIZATION:
            raise UserError(
                f"{config_file}: unsupported input normalization "
                f"{description.get('normalization')!r} (expected {NORMALIZATION!r})"
            )
        state = read_tensors(weights_file)
        tokenizer = cls.from_state(
            description["kind"],
            description["model"],
            state,
            image_size=description.get("image_size"),
            omitted=description.get("omitted_parts", ()),
            source=str(weights_file),
        )
        return tokenizer.to(device=device, dtype=dtype)

    def __repr__(self) -> str:
        h, w = self.grid_size()
        return (
            f"Tokenizer(kind={self.kind.name}, num_codes={self.num_codes}, "
            f"code_dim={self.code_dim}, image_size={self.image_size}, grid={h}x{w}, "
            f"device={self.device}, dtype={self.dtype})"
        )


def check_state(expected: dict[str, Tensor], state: dict[str, Tensor], problem: str) -> None:
    """UserError ``problem: missing ...; unexpected ...; shape mismatch ...`` unless
    ``state`` has exactly the keys of ``expected``, with their shapes."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    )
    if missing or unexpected or mismatched:
        raise UserError(
            f"{problem}: missing {few(missing)}; unexpected {few(unexpected)}; "
            f"shape mismatch {few(mismatched)}"
        )


__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "NORMALIZATION",
    "READABLE_FORMAT_VERSIONS",
    "WEIGHTS_FILE",
    "Tokenizer",
    "TokenizerKind",
    "check_state",
    "kind_names",
    "kind_of",
]
