"""The embedded default dataset: fixed crops of real photographs that ship with scikit-image.

It needs no download and no data folder, so demos, smoke runs and tests train on real
image statistics (edges, textures, skin, sky) rather than noise. Nine colour photographs
load offline from ``skimage.data``; each gives six square crops at fixed positions and
scales (no randomness at build time), downscaled to at most ``MAX_CROP_SIDE`` pixels:

====== ============================================= ==========
crop   square (s = short side of the photo)          split
====== ============================================= ==========
0      side s, centred                               val
1-4    side 0.7 s, top-left/top-right/bottom-left/   train
       bottom-right corner
5      side 0.5 s, centred                           train
====== ============================================= ==========

so 54 crops: 45 train, 9 val. The val crop (the whole centred square) overlaps the train
crops: this set shows that a pipeline runs and learns, it does not measure generalisation.
``category`` is the photo's index in ``PHOTOS`` (9 classes); ``id`` is ``"<photo>/<crop>"``.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from vq.train.data.base import DatasetConfigBase, Item, Split, Transform, make_item

# (name, loader in skimage.data, index into the loader's tuple or None, licence)
PHOTOS: tuple[tuple[str, str, int | None, str], ...] = (
    ("astronaut", "astronaut", None, "public domain (NASA, Eileen Collins)"),
    ("chelsea", "chelsea", None, "CC0 (Stefan van der Walt)"),
    ("coffee", "coffee", None, "CC0 (Rachel Michetti, courtesy of Pikolo Espresso Bar)"),
    ("rocket", "rocket", None, "public domain (SpaceX, DSCOVR launch on Falcon 9)"),
    ("hubble_deep_field", "hubble_deep_field", None, "public domain (NASA, HubbleSite)"),
    (
        "immunohistochemistry",
        "immunohistochemistry",
        None,
        "no known copyright restrictions (CMMI)",
    ),
    ("retina", "retina", None, "CC0 1.0 (Mikael Häggström, Wikimedia Commons)"),
    (
        "motorcycle_left",
        "stereo_motorcycle",
        0,
        "Middlebury 2014 stereo benchmark (Scharstein et al.); redistributed by scikit-image, "
        "no licence stated in the loader",
    ),
    (
        "motorcycle_right",
        "stereo_motorcycle",
        1,
        "Middlebury 2014 stereo benchmark (Scharstein et al.); redistributed by scikit-image, "
        "no licence stated in the loader",
    ),
)
LICENCES: dict[str, str] = {name: licence for name, _, _, licence in PHOTOS}

# (relative side, vertical anchor, horizontal anchor); anchors 0 = top/left, 1 = bottom/right.
CROPS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.5, 0.5),
    (0.7, 0.0, 0.0),
    (0.7, 0.0, 1.0),
    (0.7, 1.0, 0.0),
    (0.7, 1.0, 1.0),
    (0.5, 0.5, 0.5),
)
VAL_CROPS = frozenset({0})
MAX_CROP_SIDE = 512
NUM_CATEGORIES = len(PHOTOS)


def load_photo(loader: str, index: int | None) -> np.ndarray:
    """One photograph as an (H, W, 3) uint8 array, from the files inside scikit-image."""
    import skimage.data  # imported here: only this dataset needs scikit-image

    photo = getattr(skimage.data, loader)()
    return photo if index is None else photo[index]


def crop_photo(photo: np.ndarray, side: float, top: float, left: float) -> Image.Image:
    """The square of ``side`` x short side at the anchors, downscaled to MAX_CROP_SIDE."""
    height, width = photo.shape[:2]
    size = round(side * min(height, width))
    y = round(top * (height - size))
    x = round(left * (width - size))
    crop = Image.fromarray(photo[y : y + size, x : x + size])
    if size > MAX_CROP_SIDE:
        crop = crop.resize((MAX_CROP_SIDE, MAX_CROP_SIDE), Image.Resampling.BICUBIC)
    return crop


def build_photo_crops() -> list[tuple[str, int, Image.Image]]:
    """Every crop as ``(id, category, RGB image)``, in photo-major order. Deterministic."""
    crops = []
    for category, (name, loader, index, _) in enumerate(PHOTOS):
        photo = load_photo(loader, index)  # (H, W, 3) uint8
        for number, (side, top, left) in enumerate(CROPS):
            crops.append((f"{name}/{number}", category, crop_photo(photo, side, top, left)))
    return crops


@functools.cache
def _cached_crops() -> tuple[tuple[str, int, Image.Image], ...]:
    # One copy per process, shared by the train and val datasets; workers forked after the
    # first access inherit it, spawned workers rebuild it (well under a second).
    return tuple(build_photo_crops())


def split_indices(split: Split) -> list[int]:
    """Indices into ``build_photo_crops()`` of ``split``: crop numbers in VAL_CROPS are val."""
    is_val = [number in VAL_CROPS for _ in PHOTOS for number in range(len(CROPS))]
    return [i for i, val in enumerate(is_val) if val == (split == "val")]


class PhotosDataset(Dataset):
    """The train or val crops of ``PHOTOS`` through ``transform``; picklable (no pixels)."""

    def __init__(self, split: Split, transform: Transform) -> None:
        self.split = split
        self.transform = transform
        self._indices = split_indices(split)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int) -> Item:
        id_, category, image = _cached_crops()[self._indices[index]]
        return make_item(id_, image, category, self.transform)


class PhotosConfig(DatasetConfigBase):
    """The embedded photo set (see module docstring): 45 train / 9 val crops, 9 categories."""

    kind: Literal["photos"] = "photos"

    def build(self, split: Split) -> PhotosDataset:
        return PhotosDataset(split, self.transform(split))
