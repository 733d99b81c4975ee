"""Datasets read straight from a folder tree: labelled class folders, or unlabeled images.

* ``ImageFolderConfig`` (``kind="image_folder"``): torchvision's layout
  ``ROOT/<split>/<class>/<image>``. Classes are the sorted union of the class folder names
  of every split present, so a class missing from val does not shift the indices.
* ``FolderConfig`` (``kind="folder"``): unlabeled images (category 0) under ``ROOT``
  (searched recursively, sorted by relative path) with a split rule:

  ==========  =============================================================
  subfolders  ``ROOT/train`` and ``ROOT/val`` (FFHQ, CelebA-HQ)
  all         both splits are the whole folder (generated samples for FID)
  tail        the last ``num_val`` images, reversed, are val (``splits``)
  stride      every ``n // num_val``-th image is val (``splits``)
  ==========  =============================================================

  ``tail`` and ``stride`` take ``num_val`` or ``val_fraction`` (``floor(n * fraction)``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import PositiveInt, confloat, model_validator

from vq.core.errors import UserError
from vq.train.data.base import (
    SPLITS,
    FileDatasetConfigBase,
    ImageFileDataset,
    Split,
    list_images,
    require_dir,
)
from vq.train.data.splits import stride_split, tail_split

SplitRule = Literal["subfolders", "all", "tail", "stride"]


def _images_or_error(folder: Path) -> list[str]:
    files = list_images(folder)
    if not files:
        raise UserError(f"no image files found under {folder}")
    return files


class ImageFolderConfig(FileDatasetConfigBase):
    """Labelled images in ``ROOT/<split>/<class>/...``; category = rank of the class name."""

    kind: Literal["image_folder"] = "image_folder"
    root: str = "data/image_folder"

    def build(self, split: Split) -> ImageFileDataset:
        root = require_dir(Path(self.root), "image folder root")
        split_root = require_dir(root / split, f"{split} split folder")
        classes = sorted(
            {
                child.name
                for s in SPLITS
                if (root / s).is_dir()
                for child in (root / s).iterdir()
                if child.is_dir()
            }
        )
        files, categories = [], []
        for category, name in enumerate(classes):
            if (split_root / name).is_dir():
                found = list_images(split_root / name)
                files += [f"{name}/{file}" for file in found]
                categories += [category] * len(found)
        if not files:
            raise UserError(f"no image files found under {split_root}/<class>/")
        return ImageFileDataset(
            split_root, files, self.transform(split), categories, self.on_bad_image, classes
        )


class FolderConfig(FileDatasetConfigBase):
    """Unlabeled images under ``ROOT`` with a split rule (see module docstring)."""

    kind: Literal["folder"] = "folder"
    root: str = "data/images"
    split_rule: SplitRule = "subfolders"
    num_val: PositiveInt | None = None
    val_fraction: confloat(gt=0, lt=1) | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _check_val_size(self) -> FolderConfig:
        given = (self.num_val is not None) + (self.val_fraction is not None)
        if self.split_rule in ("tail", "stride") and given != 1:
            raise ValueError(f"split_rule={self.split_rule!r} needs num_val or val_fraction")
        if self.split_rule in ("subfolders", "all") and given:
            raise ValueError(f"split_rule={self.split_rule!r} takes no num_val/val_fraction")
        return self

    def build(self, split: Split) -> ImageFileDataset:
        root = require_dir(Path(self.root), "image folder root")
        if self.split_rule == "subfolders":
            image_root = require_dir(root / split, f"{split} split folder")
            files = _images_or_error(image_root)
        else:
            image_root = root
            files = _images_or_error(root)
            if self.split_rule != "all":
                num_val = self.num_val or math.floor(len(files) * (self.val_fraction or 0))
                rule = tail_split if self.split_rule == "tail" else stride_split
                files = [files[i] for i in rule(len(files), num_val, split)]
        return ImageFileDataset(
            image_root, files, self.transform(split), on_bad_image=self.on_bad_image
        )
