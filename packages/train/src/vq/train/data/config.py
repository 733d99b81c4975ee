"""``DatasetConfig``: the tagged union of every dataset config, and ``build_dataset``.

A config names its layout with ``kind``; pydantic picks the model from it, so a key that
the chosen kind does not have is an error.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch.utils.data import Dataset

from vq.train.data.base import Split
from vq.train.data.folders import FolderConfig, ImageFolderConfig
from vq.train.data.photos import PhotosConfig

DatasetConfig = Annotated[
    PhotosConfig | ImageFolderConfig | FolderConfig, Field(discriminator="kind")
]


def build_dataset(config: DatasetConfig, split: Split) -> Dataset:
    """The map-style dataset of ``split``; val always uses the ``none`` transform."""
    return config.build(split)
