"""ImageNet-1k in the reference layout, with the devkit class order.

Layout (``root`` defaults to ``data/imagenet``)::

    ROOT/train/<wnid>/<name>          e.g. train/n01440764/18.JPEG
    ROOT/val/<wnid>/<name>            e.g. val/n01751748/293.JPEG
    ROOT/annotations/{train,val}.json [{"name": "18.JPEG", "synset_id": 449}, ...]
    ROOT/synsets.json                 {"1": {"WNID": "n02119789", "num_children": 0, ...}, ...}

``synsets.json`` is the devkit's ``meta.mat`` keyed by ILSVRC2012_ID (all 1860 synsets of
the hierarchy). The 1000 classes are its leaves (``num_children == 0``: ids 1..1000), and a
class index is the rank of its ILSVRC2012_ID among the sorted leaf ids, i.e.
``ILSVRC2012_ID - 1``. That is the reference's order and **not** torchvision's, which sorts
by WNID: checkpoints of class-conditional models are only interchangeable in the same order.
An entry without ``num_children`` counts as a leaf (hand-made subsets).

An annotation names its file under ``"name"`` (the pinned reference) or ``"image"`` (its
docs). The item id is ``"<wnid>/<name without extension>"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from vq.core.errors import UserError
from vq.train.data.base import (
    FileDatasetConfigBase,
    ImageFileDataset,
    Split,
    require_dir,
    require_file,
)


def read_json(path: Path, what: str) -> Any:
    require_file(path, what)
    try:
        with path.open() as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{what} {path} is not valid JSON: {error}") from error


def leaf_synsets(synsets_file: Path) -> tuple[list[int], list[str]]:
    """The sorted ILSVRC2012_IDs of the leaf synsets and their WNIDs, in class order."""
    synsets = read_json(synsets_file, "ImageNet synsets file")
    if not isinstance(synsets, dict):
        raise UserError(f"{synsets_file} must map ILSVRC2012_ID to a synset record")
    try:
        leaves = sorted(
            (int(key), record["WNID"])
            for key, record in synsets.items()
            if record.get("num_children", 0) == 0
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(
            f"{synsets_file}: every key must be an integer ILSVRC2012_ID and every record "
            f"must have a 'WNID' ({error!r})"
        ) from error
    return [id_ for id_, _ in leaves], [wnid for _, wnid in leaves]


def _entry_file(entry: Any, index: int, annotations_file: Path) -> tuple[str, int]:
    """``(file name, ILSVRC2012_ID)`` of one annotation, either key spelling accepted."""
    if isinstance(entry, dict):
        name, synset_id = entry.get("name", entry.get("image")), entry.get("synset_id")
        if isinstance(name, str) and isinstance(synset_id, int):
            return name, synset_id
    raise UserError(
        f"{annotations_file}: entry {index} must be an object with 'name' (or 'image') and "
        f"'synset_id', got {entry!r}"
    )


class ImageNetConfig(FileDatasetConfigBase):
    """ImageNet-1k in the reference layout (module docstring); classes in devkit order."""

    kind: Literal["imagenet"] = "imagenet"
    root: str = "data/imagenet"

    def build(self, split: Split) -> ImageFileDataset:
        root = require_dir(Path(self.root), "ImageNet root")
        split_root = require_dir(root / split, f"ImageNet {split} folder")
        annotations_file = root / "annotations" / f"{split}.json"
        annotations = read_json(annotations_file, "ImageNet annotation file")
        if not isinstance(annotations, list):
            raise UserError(f"{annotations_file} must hold a list of annotations")
        leaf_ids, wnids = leaf_synsets(root / "synsets.json")
        category_of = {synset_id: rank for rank, synset_id in enumerate(leaf_ids)}

        files, categories = [], []
        for index, entry in enumerate(annotations):
            name, synset_id = _entry_file(entry, index, annotations_file)
            if synset_id not in category_of:
                raise UserError(
                    f"{annotations_file}: entry {index} ({name}) has synset_id {synset_id}, "
                    f"which is not a leaf synset of {root / 'synsets.json'}"
                )
            category = category_of[synset_id]
            files.append(f"{wnids[category]}/{name}")
            categories.append(category)
        return ImageFileDataset(
            split_root, files, self.transform(split), categories, self.on_bad_image, wnids
        )
