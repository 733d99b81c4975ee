"""ImageNet reference layout: devkit class order, ids, both annotation keys, bad files, errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vq.core.errors import UserError
from vq.train.data import ImageNetConfig, build_dataset, collate

# ILSVRC2012_ID -> WNID. Devkit order (by id) is n09..., n01..., n05...; WNID order differs.
LEAVES = {1: "n09999999", 2: "n01000001", 3: "n05000000"}
INNER = {1001: ("n00001740", [1, 2, 3])}  # a non-leaf synset, as in the 1860-entry devkit


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (40, 30)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def make_imagenet(root: Path, *, bad: bool = False) -> Path:
    synsets = {
        str(id_): {"WNID": wnid, "words": wnid, "num_children": 0, "children": []}
        for id_, wnid in LEAVES.items()
    }
    for id_, (wnid, children) in INNER.items():
        synsets[str(id_)] = {"WNID": wnid, "num_children": len(children), "children": children}
    (root / "annotations").mkdir(parents=True)
    (root / "synsets.json").write_text(json.dumps(synsets))
    # train names files under "name" (pinned reference), val under "image" (reference docs).
    for split, key, per_class in (("train", "name", 3), ("val", "image", 1)):
        entries = []
        for synset_id, wnid in LEAVES.items():
            for number in range(per_class):
                name = f"{synset_id * 10 + number}.JPEG"
                write_jpeg(root / split / wnid / name, seed=synset_id * 100 + number)
                entries.append({key: name, "synset_id": synset_id})
        if bad and split == "train":
            truncated = root / "train" / LEAVES[2] / "truncated.JPEG"
            write_jpeg(truncated, seed=7, size=(64, 64))
            truncated.write_bytes(truncated.read_bytes()[:300])
            (root / "train" / LEAVES[3] / "notes.JPEG").write_text("not an image")
            entries += [
                {key: "truncated.JPEG", "synset_id": 2},
                {key: "notes.JPEG", "synset_id": 3},
            ]
        (root / "annotations" / f"{split}.json").write_text(json.dumps(entries))
    return root


@pytest.fixture
def imagenet(tmp_path):
    return make_imagenet(tmp_path / "imagenet")


def test_class_index_is_devkit_order_not_wnid_order(imagenet):
    train = build_dataset(ImageNetConfig(root=str(imagenet), image_size=16), "train")
    assert len(train) == 9
    assert train.classes == [LEAVES[i] for i in sorted(LEAVES)]
    assert train.classes != sorted(LEAVES.values())
    for index in range(len(train)):
        item = train[index]
        wnid, stem = item["id"].split("/")
        synset_id = int(stem) // 10
        assert LEAVES[synset_id] == wnid
        assert item["category"] == synset_id - 1  # ILSVRC2012_ID - 1


def test_ids_and_the_image_key_of_val(imagenet):
    val = build_dataset(ImageNetConfig(root=str(imagenet), image_size=16), "val")
    assert [val[i]["id"] for i in range(len(val))] == [
        "n09999999/10",
        "n01000001/20",
        "n05000000/30",
    ]


def test_items_decode_the_files(imagenet):
    val = build_dataset(ImageNetConfig(root=str(imagenet), image_size=30), "val")
    item = val[0]
    assert item["original_image"].shape == (3, 30, 30)
    with Image.open(imagenet / "val" / "n09999999" / "10.JPEG") as image:
        decoded = torch.from_numpy(np.array(image.convert("RGB")))[:, 5:35].permute(2, 0, 1)
    assert torch.equal(item["original_image"], decoded)  # 30 px short side: crop only
    assert torch.allclose(item["image"], item["original_image"] / 127.5 - 1)


def test_annotation_of_an_inner_synset_is_rejected(imagenet):
    entries = json.loads((imagenet / "annotations" / "val.json").read_text())
    entries.append({"name": "x.JPEG", "synset_id": 1001})
    (imagenet / "annotations" / "val.json").write_text(json.dumps(entries))
    with pytest.raises(UserError, match="not a leaf synset"):
        build_dataset(ImageNetConfig(root=str(imagenet)), "val")


def test_malformed_annotation_names_the_file_and_entry(imagenet):
    (imagenet / "annotations" / "val.json").write_text(json.dumps([{"file": "a.JPEG"}]))
    with pytest.raises(UserError, match=r"val\.json: entry 0"):
        build_dataset(ImageNetConfig(root=str(imagenet)), "val")


def test_missing_root_and_annotation_fail_at_build_naming_the_path(imagenet, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match=str(missing)):
        build_dataset(ImageNetConfig(root=str(missing)), "train")
    (imagenet / "annotations" / "val.json").unlink()
    with pytest.raises(UserError, match=r"annotations/val\.json does not exist"):
        build_dataset(ImageNetConfig(root=str(imagenet)), "val")
    (imagenet / "synsets.json").unlink()
    with pytest.raises(UserError, match=r"synsets\.json does not exist"):
        build_dataset(ImageNetConfig(root=str(imagenet)), "train")


def test_bad_images_raise_naming_the_file(tmp_path):
    root = make_imagenet(tmp_path / "imagenet", bad=True)
    train = build_dataset(ImageNetConfig(root=str(root), image_size=16), "train")
    assert len(train) == 11
    with pytest.raises(UserError, match=r"truncated\.JPEG"):
        train[9]
    with pytest.raises(UserError, match=r"notes\.JPEG"):
        train[10]


def test_bad_images_are_skipped_and_counted(tmp_path):
    root = make_imagenet(tmp_path / "imagenet", bad=True)
    config = ImageNetConfig(root=str(root), image_size=16, on_bad_image="skip")
    train = pickle.loads(pickle.dumps(build_dataset(config, "train")))
    assert train[9] is None
    assert train[10] is None
    batch = collate([train[i] for i in (0, 9, 1, 10)])
    assert batch["skipped"] == 2
    assert batch["id"] == [train.id(0), train.id(1)]
    assert batch["image"].shape == (2, 3, 16, 16)
    assert batch["category"].tolist() == [0, 0]
    empty = collate([train[9], train[10]])
    assert empty["skipped"] == 2
    assert empty["id"] == []
