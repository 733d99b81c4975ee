"""The other image sets of the reference recipes, each with the reference's split rule.

All are unlabeled here (category 0), as in the reference. Layouts and rules:

================  =============================================================  ==========
kind              files                                                          val split
================  =============================================================  ==========
laion_aesthetics  ROOT/<subset>/<filename>; filenames are the first column of    last 25_000,
                  ROOT/annotations/<subset>.tsv (no header), in that order        reversed
sa_med2d          ROOT/images/<key>.png; keys of ROOT/annotations/               every
                  SAMed2D_<version>.json ("images/<key>.png"), in that order     n // 25_000-th
satin             ROOT/<subset>/<image> per subset, sorted by name (export the   every 10th
                  Hugging Face rows in order, e.g. as 000000.png ...)            per subset
coco              ROOT/<split><year>/<file_name>, the "images" list of           the official
                  ROOT/annotations/instances_<split><year>.json, in that order   val<year>
================  =============================================================  ==========

FFHQ and CelebA-HQ are ``FolderConfig`` presets (``vq.train.data.config``). The reference
retries a random other index when a LAION image fails to load; here ``on_bad_image="skip"``
drops it instead, which keeps loading a deterministic function of the index.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

from pydantic import PositiveInt

from vq.core.errors import UserError
from vq.train.data.base import (
    FileDatasetConfigBase,
    ImageFileDataset,
    Split,
    list_images,
    require_dir,
    require_file,
)
from vq.train.data.imagenet import read_json
from vq.train.data.splits import stride_split, tail_split

SATIN_SUBSETS: dict[str, int] = {
    # subset -> number of samples in the Hugging Face release (val = n // 10 of them)
    "NASC-TG2": 20000,
    "WHU-RS19": 1005,
    "RSSCN7": 2800,
    "RS_C11": 1232,
    "SIRI-WHU": 2400,
    "NWPU-RESISC45": 31500,
    "PatternNet": 30400,
    "RSD46-WHU": 17516,
    "CLRS": 15000,
    "Optimal-31": 1860,
    "Airbus-Wind-Turbines-Patches": 71504,
    "USTC_SmokeRS": 6225,
    "Satellite-Images-of-Hurricane-Damage": 10000,
    "Million-AID": 10000,
    "UC_Merced_LandUse_MultiLabel": 2100,
    "MLRSNet": 109161,
    "MultiScene": 14000,
    "RSI-CB256": 24747,
    "AID_MultiLabel": 3000,
}
SATIN_VAL_DIVISOR = 10


class LAIONAestheticsConfig(FileDatasetConfigBase):
    kind: Literal["laion_aesthetics"] = "laion_aesthetics"
    root: str = "data/laion/aesthetics"
    subset: str = "v2_6.5plus"
    num_val: PositiveInt = 25_000

    def build(self, split: Split) -> ImageFileDataset:
        root = require_dir(Path(self.root), "LAION-Aesthetics root")
        image_root = require_dir(root / self.subset, "LAION-Aesthetics image folder")
        annotations_file = require_file(
            root / "annotations" / f"{self.subset}.tsv", "LAION-Aesthetics annotation file"
        )
        with annotations_file.open(newline="") as f:
            files = [row[0] for row in csv.reader(f, delimiter="\t") if row]
        files = [files[i] for i in tail_split(len(files), self.num_val, split)]
        return ImageFileDataset(
            image_root, files, self.transform(split), on_bad_image=self.on_bad_image
        )


class SAMed2DConfig(FileDatasetConfigBase):
    kind: Literal["sa_med2d"] = "sa_med2d"
    root: str = "data/sa_med2d"
    version: str = "v1"
    num_val: PositiveInt = 25_000

    def build(self, split: Split) -> ImageFileDataset:
        root = require_dir(Path(self.root), "SA-Med2D root")
        image_root = require_dir(root / "images", "SA-Med2D image folder")
        annotations_file = root / "annotations" / f"SAMed2D_{self.version}.json"
        annotations = read_json(annotations_file, "SA-Med2D annotation file")
        if not isinstance(annotations, dict):
            raise UserError(f"{annotations_file} must map 'images/<key>.png' to mask lists")
        files = [key.removeprefix("images/") for key in annotations]
        files = [files[i] for i in stride_split(len(files), self.num_val, split)]
        return ImageFileDataset(
            image_root, files, self.transform(split), on_bad_image=self.on_bad_image
        )


class SATINConfig(FileDatasetConfigBase):
    kind: Literal["satin"] = "satin"
    root: str = "data/satin"
    subsets: tuple[str, ...] = tuple(SATIN_SUBSETS)

    def build(self, split: Split) -> ImageFileDataset:
        root = require_dir(Path(self.root), "SATIN root")
        files = []
        for subset in self.subsets:
            found = list_images(require_dir(root / subset, f"SATIN subset {subset!r} folder"))
            num_val = len(found) // SATIN_VAL_DIVISOR
            files += [f"{subset}/{found[i]}" for i in stride_split(len(found), num_val, split)]
        return ImageFileDataset(root, files, self.transform(split), on_bad_image=self.on_bad_image)


class COCOConfig(FileDatasetConfigBase):
    kind: Literal["coco"] = "coco"
    root: str = "data/coco"
    year: Literal[2014, 2017] = 2014

    def build(self, split: Split) -> ImageFileDataset:
        root = require_dir(Path(self.root), "COCO root")
        image_root = require_dir(root / f"{split}{self.year}", f"COCO {split} image folder")
        annotations_file = root / "annotations" / f"instances_{split}{self.year}.json"
        annotations = read_json(annotations_file, "COCO annotation file")
        try:
            files = [image["file_name"] for image in annotations["images"]]
        except (KeyError, TypeError) as error:
            raise UserError(
                f"{annotations_file} must have an 'images' list of objects with 'file_name'"
            ) from error
        return ImageFileDataset(
            image_root, files, self.transform(split), on_bad_image=self.on_bad_image
        )
