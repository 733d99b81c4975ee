"""Datasets, transforms and batching for training and evaluation.

Every dataset is map-style and yields ``{"id", "original_image", "image", "category"}``
(see ``vq.train.data.base``); build one from a config with ``build_dataset(config, split)``
and batch with ``collate``. ``PhotosConfig`` is the embedded default that needs no files.
Token files (``vq.train.data.token_files``) hold a tokenizer's codes of a dataset, written
once and read by AR runs.
"""

from vq.train.data.base import (
    BadImagePolicy,
    ImageFileDataset,
    Item,
    Split,
    collate,
    load_rgb,
)
from vq.train.data.config import (
    ConcatConfig,
    DatasetConfig,
    build_dataset,
    celeba_hq,
    ffhq,
    hq_faces,
)
from vq.train.data.folders import FolderConfig, ImageFolderConfig
from vq.train.data.imagenet import ImageNetConfig
from vq.train.data.photos import LICENCES, PhotosConfig, PhotosDataset
from vq.train.data.public import COCOConfig, LAIONAestheticsConfig, SAMed2DConfig, SATINConfig
from vq.train.data.shards import ShardsConfig, ShardsDataset
from vq.train.data.token_files import (
    TokenFileConfig,
    TokenFileDataset,
    TokenFileHeader,
    merge_tokens,
    read_token_file_header,
    write_token_file,
)
from vq.train.data.transforms import Augmentation, build_transform, to_float, to_uint8

__all__ = [
    "LICENCES",
    "Augmentation",
    "BadImagePolicy",
    "COCOConfig",
    "ConcatConfig",
    "DatasetConfig",
    "FolderConfig",
    "ImageFileDataset",
    "ImageFolderConfig",
    "ImageNetConfig",
    "Item",
    "LAIONAestheticsConfig",
    "PhotosConfig",
    "PhotosDataset",
    "SAMed2DConfig",
    "SATINConfig",
    "ShardsConfig",
    "ShardsDataset",
    "Split",
    "TokenFileConfig",
    "TokenFileDataset",
    "TokenFileHeader",
    "build_dataset",
    "build_transform",
    "celeba_hq",
    "collate",
    "ffhq",
    "hq_faces",
    "load_rgb",
    "merge_tokens",
    "read_token_file_header",
    "to_float",
    "to_uint8",
    "write_token_file",
]
