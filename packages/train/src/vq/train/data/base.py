"""The item contract shared by every dataset, the image-file dataset, and ``collate``.

An item is a dict::

    {"id": str,                       # stable name, e.g. "n01440764/18" (used for file names)
     "original_image": uint8 (3, S, S),
     "image": float32 (3, S, S) in [-1, 1],   # to_float(original_image)
     "category": int}                 # 0 for unlabeled sets

A file that cannot be decoded either stops the run with a ``UserError`` naming it
(``on_bad_image="error"``, the default) or makes the dataset return ``None`` for that index
(``"skip"``); ``collate`` drops the ``None`` items and counts them in ``batch["skipped"]``.

File lists are held as numpy byte-string arrays rather than Python lists of ``str``: the
ImageNet train list has 1.28M entries, and DataLoader workers forked from the main process
would otherwise copy every page of it as reference counts are touched.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import torch
from PIL import Image
from pydantic import PositiveInt
from torch.utils.data import Dataset

from vq.core.config import Config
from vq.core.errors import UserError
from vq.train.data.transforms import Augmentation, build_transform, to_float
from vq.train.image_files import DECODE_ERRORS, IMAGE_SUFFIXES, load_rgb

BadImagePolicy = Literal["error", "skip"]
Transform = Callable[[Image.Image], torch.Tensor]


class Item(TypedDict):
    id: str
    original_image: torch.Tensor
    image: torch.Tensor
    category: int


def make_item(id_: str, image: Image.Image, category: int, transform: Transform) -> Item:
    """Apply ``transform`` to an RGB image and fill in the item contract."""
    original = transform(image)  # (3, S, S) uint8
    if original.dtype != torch.uint8 or original.ndim != 3 or original.shape[0] != 3:
        raise TypeError(
            f"transform must return a uint8 (3, S, S) tensor, got {original.dtype} "
            f"{tuple(original.shape)}"
        )
    return Item(id=id_, original_image=original, image=to_float(original), category=category)


# What PIL raises for a file that is not a readable image: UnidentifiedImageError and
def list_images(folder: Path) -> list[str]:
    """Relative POSIX paths of the image files under ``folder``, recursively, sorted."""
    found = []
    for directory, subdirs, files in os.walk(folder):
        subdirs.sort()
        for name in files:
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                found.append(Path(directory, name).relative_to(folder).as_posix())
    return sorted(found)


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise UserError(f"{what} {path} is not a directory (missing or mistyped root?)")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    return path


class ImageFileDataset(Dataset):
    """Map-style dataset over image files below ``image_root``.

    ``files`` are paths relative to ``image_root``; an item's id is that path without its
    extension (so ImageNet's ``n01440764/18.JPEG`` becomes ``n01440764/18``). ``categories``
    defaults to all zeros (unlabeled); ``classes`` names the categories.
    """

    def __init__(
        self,
        image_root: Path,
        files: Sequence[str],
        transform: Transform,
        categories: Sequence[int] | None = None,
        on_bad_image: BadImagePolicy = "error",
        classes: Sequence[str] = ("",),
    ) -> None:
        if categories is not None and len(categories) != len(files):
            raise ValueError(f"{len(files)} files but {len(categories)} categories")
        self.image_root = Path(image_root)
        self.classes = list(classes)
        """Class names by category index (``[""]`` for unlabeled sets)."""
        self.transform = transform
        self.on_bad_image = on_bad_image
        self._files = np.array([f.encode() for f in files], dtype=np.bytes_)
        self._categories = np.asarray(
            categories if categories is not None else np.zeros(len(files)), dtype=np.int64
        )

    def __len__(self) -> int:
        return len(self._files)

    def file(self, index: int) -> str:
        return self._files[index].decode()

    def path(self, index: int) -> Path:
        return self.image_root / self.file(index)

    def id(self, index: int) -> str:
        return os.path.splitext(self.file(index))[0]

    def category(self, index: int) -> int:
        return int(self._categories[index])

    def __getitem__(self, index: int) -> Item | None:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        path = self.path(index)
        try:
            image = load_rgb(path)
        except DECODE_ERRORS as error:
            if self.on_bad_image == "skip":
                return None
            raise UserError(
                f"cannot read image {path}: {error} (set on_bad_image='skip' to skip such files)"
            ) from error
        return make_item(self.id(index), image, self.category(index), self.transform)


def collate(items: Sequence[Item | None]) -> dict[str, Any]:
    """Batch items: tensors stacked, ints into a LongTensor, everything else listed.

    ``None`` items (unreadable files under ``on_bad_image="skip"``) are dropped and counted in
    ``batch["skipped"]`` so that the loop can log them. If every item was dropped the batch
    has no ``"id"`` entries and zero-length tensors: check ``len(batch["id"])``.
    """
    kept = [item for item in items if item is not None]
    batch: dict[str, Any] = {}
    if not kept:
        batch = {
            "id": [],
            "original_image": torch.empty(0, 3, 0, 0, dtype=torch.uint8),
            "image": torch.empty(0, 3, 0, 0),
            "category": torch.empty(0, dtype=torch.long),
        }
    for key in kept[0] if kept else ():
        values = [item[key] for item in kept]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)  # (B, ...)
        elif isinstance(values[0], int) and not isinstance(values[0], bool):
            batch[key] = torch.tensor(values, dtype=torch.long)  # (B,)
        else:
            batch[key] = values
    batch["skipped"] = len(items) - len(kept)
    return batch


Split = Literal["train", "val"]
SPLITS: tuple[Split, ...] = ("train", "val")


class DatasetConfigBase(Config):
    """Fields shared by every dataset config; subclasses add ``kind`` and ``build``."""

    image_size: PositiveInt = 256
    augmentation: Augmentation = "none"
    """Training pipeline (see ``transforms``); the val split always uses ``none``."""

    def transform(self, split: Split) -> Transform:
        return build_transform(self.augmentation if split == "train" else "none", self.image_size)

    @abstractmethod
    def build(self, split: Split) -> Dataset:
        """The map-style dataset of ``split``; missing roots and annotations fail here."""


class FileDatasetConfigBase(DatasetConfigBase):
    on_bad_image: BadImagePolicy = "error"
    """``error``: stop with the file's path; ``skip``: drop it from its batch (counted)."""
