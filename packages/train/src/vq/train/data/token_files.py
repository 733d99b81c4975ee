"""Token files: the codes of a tokenizer over a dataset, written once and read by AR runs.

A token file is a safetensors file with::

    tokens      int32 (N, h, w)  code ids in [0, codebook_size)
    categories  int64 (N,)       class of each image
    ids         uint8 (L,)       UTF-8 of the N image ids joined by "\\n"
    metadata    {"format": "vq-tokens", "version": "1", "codebook_size": "<K>" (optional)}

``write_token_file`` writes one, ``read_token_file_header`` reads what it holds without its
tensors, ``TokenFileDataset`` serves its grids and ``TokenFileConfig`` names one as the
training data of an AR run. A token file holds one view of each image (no random crop or
flip, unlike on-the-fly tokenization); it saves the tokenizer's forward pass in every step
of a long run.

Evaluation writes token files from every rank at once: each rank keeps the grids of the
images it owns as *token parts* (``token_part``), and ``merge_tokens`` joins the parts of
all ranks into one file in dataset order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import Dataset

from vq.core import distributed
from vq.core.config import Config
from vq.core.errors import UserError
from vq.core.logging import LOGGER

TOKEN_FILE_FORMAT = "vq-tokens"
TOKEN_FILE_VERSION = "1"
PART_INDEX = "index"  # the dataset index of every grid of a token part


def write_token_file(
    path: Path,
    tokens: Tensor,
    categories: Tensor,
    ids: Sequence[str],
    *,
    codebook_size: int | None = None,
) -> None:
    """Write ``tokens`` (N, h, w), ``categories`` (N,) and image ``ids`` to ``path``.

    ``codebook_size`` is recorded so that a run training on the file alone (no tokenizer)
    can size its vocabulary; pass the tokenizer's ``num_codes``. The file appears only when
    complete (written under a temporary name, then renamed).
    """
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be (N, h, w), got shape {tuple(tokens.shape)}")
    n = tokens.shape[0]
    if categories.shape != (n,) or len(ids) != n:
        raise ValueError(
            f"{n} token grids but categories of shape {tuple(categories.shape)} and {len(ids)} ids"
        )
    if tokens.is_floating_point() or categories.is_floating_point():
        raise ValueError("tokens and categories must be integer tensors")
    if any("\n" in i for i in ids):
        raise ValueError("image ids must not contain newlines")
    if n and int(tokens.min()) < 0:
        raise ValueError("tokens must be non-negative code ids")
    if codebook_size is not None and n and int(tokens.max()) >= codebook_size:
        raise ValueError(f"a token is {int(tokens.max())}, outside codebook_size {codebook_size}")
    metadata = {"format": TOKEN_FILE_FORMAT, "version": TOKEN_FILE_VERSION}
    if codebook_size is not None:
        metadata["codebook_size"] = str(codebook_size)
    joined = "\n".join(ids).encode()
    tensors = {
        "tokens": tokens.detach().to(torch.int32).cpu().contiguous(),
        "categories": categories.detach().to(torch.int64).cpu().contiguous(),
        "ids": torch.from_numpy(np.frombuffer(joined, dtype=np.uint8).copy()),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


@dataclass(frozen=True)
class TokenFileHeader:
    """What a token file holds, read without loading its tensors."""

    num: int
    grid: tuple[int, int]
    codebook_size: int | None


def read_token_file_header(path: Path) -> TokenFileHeader:
    """The header of the token file ``path``; one ``UserError`` when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"token file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            keys = set(f.keys())
            shape = f.get_slice("tokens").get_shape() if "tokens" in keys else None
    except Exception as e:  # not a safetensors file at all
        raise UserError(f"token file {path} is not readable: {str(e).splitlines()[0]}") from None
    if metadata.get("format") != TOKEN_FILE_FORMAT or not {"tokens", "categories", "ids"} <= keys:
        raise UserError(
            f"{path} is not a vq token file (expected format {TOKEN_FILE_FORMAT!r} with tokens, "
            "categories and ids; see vq.train.data.token_files.write_token_file)"
        )
    if shape is None or len(shape) != 3:
        raise UserError(f"token file {path}: tokens must be (N, h, w), got shape {shape}")
    size = metadata.get("codebook_size")
    return TokenFileHeader(shape[0], (shape[1], shape[2]), int(size) if size else None)


class TokenFileDataset(Dataset):
    """Items ``{"id", "tokens" (h, w) int64, "category"}`` of a token file (loaded whole).

    Tokens stay int32 in memory (4 bytes per token: 1.3 GB for ImageNet's 1.28M 16x16
    grids) and ids a numpy byte-string array, so forked loader workers share the pages.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.header = read_token_file_header(self.path)
        with safe_open(str(self.path), framework="pt") as f:
            self._tokens = f.get_tensor("tokens")  # (N, h, w)
            self._categories = f.get_tensor("categories")  # (N,)
            raw = f.get_tensor("ids").numpy().tobytes()
        self._ids = np.array(raw.split(b"\n") if self.header.num else [], dtype=np.bytes_)
        if self._categories.shape != (self.header.num,) or len(self._ids) != self.header.num:
            raise UserError(
                f"token file {self.path}: {self.header.num} grids but "
                f"{self._categories.shape[0]} categories and {len(self._ids)} ids"
            )

    @property
    def grid(self) -> tuple[int, int]:
        return self.header.grid

    @property
    def codebook_size(self) -> int | None:
        return self.header.codebook_size

    def num_classes_needed(self) -> int:
        return int(self._categories.max()) + 1 if self.header.num else 0

    def max_token(self) -> int:
        return int(self._tokens.max()) if self.header.num else -1

    def __len__(self) -> int:
        return self.header.num

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "id": self._ids[index].decode(),
            "tokens": self._tokens[index].long(),  # (h, w)
            "category": int(self._categories[index]),
        }


class TokenFileConfig(Config):
    """Train on tokens written ahead (a token file, see the module docstring) instead of
    images."""

    kind: Literal["tokens"] = "tokens"
    path: Path


# --------------------------------------------------------------------------------------------
# Token files written by every rank of a pass
# --------------------------------------------------------------------------------------------


def token_part(
    index: Tensor, tokens: Tensor, categories: Tensor, ids: Sequence[str]
) -> dict[str, Any]:
    """One batch's contribution to ``merge_tokens``: dataset ``index`` (B,), ``tokens``
    (B, h, w) or (B, crops, h, w), ``categories`` (B,) and the B image ``ids``."""
    return {PART_INDEX: index, "tokens": tokens.cpu(), "category": categories, "ids": list(ids)}


def _joined_parts(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The token parts of one rank as one part (empty tensors when there are none)."""

    def cat(key: str) -> Tensor:
        return torch.cat([p[key] for p in parts]) if parts else torch.empty(0, dtype=torch.long)

    return {
        PART_INDEX: cat(PART_INDEX),
        "tokens": cat("tokens"),
        "category": cat("category"),
        "ids": [i for p in parts for i in p["ids"]],
    }


def merge_tokens(
    path: Path, parts: Sequence[dict[str, Any]], num_codes: int, crops: int = 1
) -> None:
    """Write the owned tokens of every rank into one token file at ``path`` (a collective).

    Each rank saves its part next to ``path``; rank 0 merges them in dataset order (memory
    of one copy, on rank 0 only) and removes them, so the ranks must share ``path``'s file
    system. With ``crops`` > 1 the grids of one image are ``(crops, h, w)`` and become
    ``crops`` consecutive entries with ids ``<id>/crop<k>``.
    """
    path = Path(path)
    rank_files = [
        path.with_name(f".{path.name}.rank{r}.pt") for r in range(distributed.world_size())
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_joined_parts(parts), rank_files[distributed.rank()])
    distributed.barrier()
    if distributed.is_main():
        loaded = [torch.load(f, weights_only=True) for f in rank_files]
        merged = _joined_parts([p for p in loaded if p[PART_INDEX].numel()])
        order = torch.argsort(merged[PART_INDEX])  # (N,)
        grids = merged["tokens"][order]  # (N, [crops,] h, w)
        categories = merged["category"][order]  # (N,)
        ids = [merged["ids"][i] for i in order.tolist()]
        if crops > 1:
            grids = grids.flatten(0, 1)  # (N * crops, h, w)
            categories = categories.repeat_interleave(crops)
            ids = [f"{i}/crop{k}" for i in ids for k in range(crops)]
        write_token_file(path, grids, categories, ids, codebook_size=num_codes)
        for f in rank_files:
            f.unlink()
        LOGGER.info("wrote %d token grids to %s", grids.shape[0], path)
    distributed.barrier()


__all__ = [
    "TOKEN_FILE_FORMAT",
    "TOKEN_FILE_VERSION",
    "TokenFileConfig",
    "TokenFileDataset",
    "TokenFileHeader",
    "merge_tokens",
    "read_token_file_header",
    "token_part",
    "write_token_file",
]
