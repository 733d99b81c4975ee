"""``DatasetConfig``: the tagged union of every dataset config, ``build_dataset`` and presets.

A config names its layout with ``kind``; pydantic picks the model from it, so a key that
the chosen kind does not have is an error. ``ConcatConfig`` chains several datasets (the
reference's "hq_faces" = FFHQ + CelebA-HQ).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator
from torch.utils.data import ConcatDataset, Dataset

from vq.core.config import Config
from vq.train.data.base import Split
from vq.train.data.folders import FolderConfig, ImageFolderConfig
from vq.train.data.imagenet import ImageNetConfig
from vq.train.data.photos import PhotosConfig
from vq.train.data.public import COCOConfig, LAIONAestheticsConfig, SAMed2DConfig, SATINConfig
from vq.train.data.shards import ShardsConfig
from vq.train.data.transforms import Augmentation


class ConcatConfig(Config):
    """Several datasets one after the other; all must produce the same image size."""

    kind: Literal["concat"] = "concat"
    datasets: list[DatasetConfig] = Field(min_length=1)

    def image_sizes(self) -> set[int]:
        return set().union(
            *(
                d.image_sizes() if isinstance(d, ConcatConfig) else {d.image_size}
                for d in self.datasets
            )
        )

    @property
    def image_size(self) -> int:
        """The one image size of every part (the validator below refuses two)."""
        (size,) = self.image_sizes()
        return size

    @model_validator(mode="after")
    def _same_image_size(self) -> ConcatConfig:
        if len(sizes := self.image_sizes()) > 1:
            raise ValueError(f"concatenated datasets disagree on image_size: {sorted(sizes)}")
        return self

    def build(self, split: Split) -> ConcatDataset:
        return ConcatDataset([d.build(split) for d in self.datasets])


DatasetConfig = Annotated[
    PhotosConfig
    | ImageNetConfig
    | ImageFolderConfig
    | FolderConfig
    | LAIONAestheticsConfig
    | SAMed2DConfig
    | SATINConfig
    | COCOConfig
    | ShardsConfig
    | ConcatConfig,
    Field(discriminator="kind"),
]
ConcatConfig.model_rebuild()


def build_dataset(config: DatasetConfig, split: Split) -> Dataset:
    """The map-style dataset of ``split``; val always uses the ``none`` transform.

    Missing roots and annotation files raise ``UserError`` here, not at the first item.
    """
    return config.build(split)


def ffhq(
    image_size: int = 256, augmentation: Augmentation = "none", root: str = "data/ffhq-256"
) -> FolderConfig:
    """FFHQ at 256 px as the reference lays it out: ``ROOT/{train,val}/<image>``."""
    return FolderConfig(
        root=root, split_rule="subfolders", image_size=image_size, augmentation=augmentation
    )


def celeba_hq(
    image_size: int = 256, augmentation: Augmentation = "none", root: str = "data/celeba-hq-256"
) -> FolderConfig:
    """CelebA-HQ at 256 px: ``ROOT/{train,val}/<image>``."""
    return FolderConfig(
        root=root, split_rule="subfolders", image_size=image_size, augmentation=augmentation
    )


def hq_faces(image_size: int = 256, augmentation: Augmentation = "none") -> ConcatConfig:
    """FFHQ followed by CelebA-HQ."""
    return ConcatConfig(
        datasets=[ffhq(image_size, augmentation), celeba_hq(image_size, augmentation)]
    )
