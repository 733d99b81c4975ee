"""The embedded photo set: count, item contract, fixed crops, reproducible builds."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter, ValidationError

from vq.train.data import DatasetConfig, PhotosConfig, build_dataset, collate
from vq.train.data.photos import LICENCES, PHOTOS, build_photo_crops, load_photo


@pytest.fixture(scope="module")
def crops():
    return build_photo_crops()


def test_counts_categories_and_ids():
    train = build_dataset(PhotosConfig(image_size=32), "train")
    val = build_dataset(PhotosConfig(image_size=32), "val")
    assert (len(train), len(val)) == (45, 9)
    val_items = [val[i] for i in range(len(val))]
    assert [item["category"] for item in val_items] == list(range(9))
    assert [item["id"] for item in val_items] == [f"{name}/0" for name, *_ in PHOTOS]
    train_ids = {train[i]["id"] for i in range(len(train))}
    assert not train_ids & {item["id"] for item in val_items}
    assert set(LICENCES) == {name for name, *_ in PHOTOS}


@pytest.mark.parametrize("augmentation", ["default", "strong", "weak", "none"])
def test_item_contract(augmentation):
    dataset = build_dataset(PhotosConfig(image_size=48, augmentation=augmentation), "train")
    item = dataset[7]
    assert item["original_image"].shape == (3, 48, 48)
    assert item["original_image"].dtype == torch.uint8
    assert item["image"].dtype == torch.float32
    assert torch.allclose(item["image"], item["original_image"].float() / 127.5 - 1)
    assert isinstance(item["category"], int)
    assert isinstance(item["id"], str)


def test_val_ignores_the_training_augmentation():
    strong = build_dataset(PhotosConfig(image_size=32, augmentation="strong"), "val")
    none = build_dataset(PhotosConfig(image_size=32, augmentation="none"), "val")
    torch.manual_seed(0)
    first = strong[3]["original_image"]
    torch.manual_seed(1)
    assert torch.equal(first, none[3]["original_image"])


def test_crop_zero_of_a_square_photo_is_the_photo(crops):
    ids = [id_ for id_, _, _ in crops]
    astronaut = crops[ids.index("astronaut/0")][2]
    assert np.array_equal(np.asarray(astronaut), load_photo("astronaut", None))
    top_left = crops[ids.index("coffee/1")][2]  # 0.7 * 400 = 280 px, top-left corner
    assert np.array_equal(np.asarray(top_left), load_photo("coffee", None)[:280, :280])


def test_crops_are_identical_across_two_builds(crops):
    again = build_photo_crops()
    assert len(crops) == len(again) == 54
    for (id_a, cat_a, image_a), (id_b, cat_b, image_b) in zip(crops, again):
        assert (id_a, cat_a) == (id_b, cat_b)
        assert np.array_equal(np.asarray(image_a), np.asarray(image_b))
        assert max(image_a.size) <= 512
        assert image_a.size[0] == image_a.size[1]


def test_dataset_pickles_without_pixels_and_collates():
    dataset = build_dataset(PhotosConfig(image_size=32), "train")
    clone = pickle.loads(pickle.dumps(dataset))
    assert len(pickle.dumps(dataset)) < 100_000
    batch = collate([clone[i] for i in range(4)])
    assert batch["image"].shape == (4, 3, 32, 32)
    assert batch["category"].dtype == torch.long
    assert torch.equal(batch["original_image"][0], dataset[0]["original_image"])
    assert batch["skipped"] == 0


def test_config_union_picks_by_kind_and_rejects_unknown_keys():
    adapter = TypeAdapter(DatasetConfig)
    assert isinstance(adapter.validate_python({"kind": "photos"}), PhotosConfig)
    with pytest.raises(ValidationError):
        adapter.validate_python({"kind": "photos", "root": "x"})
    with pytest.raises(ValidationError):
        adapter.validate_python({"kind": "photos", "augmentation": "medium"})
