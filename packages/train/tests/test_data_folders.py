"""Folder layouts, the reference split rules, and the other reference datasets on fake trees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from vq.core.errors import UserError
from vq.train.data import (
    COCOConfig,
    FolderConfig,
    ImageFolderConfig,
    LAIONAestheticsConfig,
    SAMed2DConfig,
    SATINConfig,
    build_dataset,
    hq_faces,
)
from vq.train.data.splits import stride_split, tail_split


def write_png(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12, 3), value, dtype=np.uint8)).save(path)


def ids(dataset) -> list[str]:
    return [dataset.id(i) for i in range(len(dataset))]


def reference_index(n: int, num_val: int, train: bool, index: int) -> int:
    """The reference SplitMixin's index map with shuffle=True, transcribed."""
    chunk = n // num_val
    if train:
        return index + 1 + min(index // (chunk - 1), num_val - 1)
    return index * chunk


@pytest.mark.parametrize(("n", "num_val"), [(10, 2), (11, 3), (100, 7), (20, 10)])
def test_stride_split_equals_the_reference_index_map(n, num_val):
    train, val = stride_split(n, num_val, "train"), stride_split(n, num_val, "val")
    assert train.tolist() == [reference_index(n, num_val, True, i) for i in range(n - num_val)]
    assert val.tolist() == [reference_index(n, num_val, False, i) for i in range(num_val)]
    assert sorted([*train, *val]) == list(range(n))


def test_tail_split_takes_the_last_samples_reversed():
    assert tail_split(6, 2, "val").tolist() == [5, 4]
    assert tail_split(6, 2, "train").tolist() == [0, 1, 2, 3]
    with pytest.raises(UserError):
        tail_split(3, 3, "val")
    with pytest.raises(UserError):
        stride_split(5, 3, "val")


def test_image_folder_classes_are_the_sorted_union_over_splits(tmp_path):
    for split, name in [("train", "zebra"), ("train", "ant"), ("val", "ant"), ("val", "moth")]:
        write_png(tmp_path / split / name / "a.png")
        write_png(tmp_path / split / name / "b.png")
    (tmp_path / "val" / "moth" / "README.txt").write_text("ignored: not an image")
    val = build_dataset(ImageFolderConfig(root=str(tmp_path), image_size=8), "val")
    assert val.classes == ["ant", "moth", "zebra"]
    assert ids(val) == ["ant/a", "ant/b", "moth/a", "moth/b"]
    assert [val[i]["category"] for i in range(len(val))] == [0, 0, 1, 1]
    train = build_dataset(ImageFolderConfig(root=str(tmp_path), image_size=8), "train")
    assert [train[i]["category"] for i in range(len(train))] == [0, 0, 2, 2]


@pytest.fixture
def flat(tmp_path):
    for i in range(10):
        write_png(tmp_path / "flat" / f"{i:02d}.png", value=i)
    return tmp_path / "flat"


def test_flat_folder_split_rules(flat):
    def split_ids(split, **rule):
        return ids(build_dataset(FolderConfig(root=str(flat), **rule), split))

    assert split_ids("val", split_rule="all") == [f"{i:02d}" for i in range(10)]
    assert split_ids("val", split_rule="tail", num_val=3) == ["09", "08", "07"]
    assert split_ids("val", split_rule="stride", val_fraction=0.2) == ["00", "05"]
    assert len(split_ids("train", split_rule="stride", num_val=2)) == 8
    item = build_dataset(FolderConfig(root=str(flat), split_rule="all", image_size=8), "val")[3]
    assert item["category"] == 0
    assert item["original_image"].unique().tolist() == [3]


def test_flat_folder_rule_arguments_are_validated():
    with pytest.raises(ValidationError):
        FolderConfig(split_rule="tail")
    with pytest.raises(ValidationError):
        FolderConfig(split_rule="all", num_val=3)
    with pytest.raises(ValidationError):
        FolderConfig(split_rule="stride", val_fraction=1.5)


def test_empty_or_missing_folders_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no image files"):
        build_dataset(FolderConfig(root=str(tmp_path), split_rule="all"), "train")
    with pytest.raises(UserError, match=str(tmp_path / "train")):
        build_dataset(FolderConfig(root=str(tmp_path)), "train")


def test_face_presets_read_split_subfolders_and_concatenate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for root, count in [("data/ffhq-256", 3), ("data/celeba-hq-256", 2)]:
        for split in ("train", "val"):
            for i in range(count):
                write_png(tmp_path / root / split / f"{i}.png")
    faces = build_dataset(hq_faces(image_size=8, augmentation="strong"), "train")
    assert len(faces) == 5
    assert faces[4]["original_image"].shape == (3, 8, 8)


def test_laion_aesthetics_last_rows_reversed_are_val(tmp_path):
    rows = [f"img{i}.png\ta caption\twith tab\t6.{i}\thttp://x/{i}" for i in range(8)]
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "v2_6.5plus.tsv").write_text("\n".join(rows) + "\n")
    for i in range(8):
        write_png(tmp_path / "v2_6.5plus" / f"img{i}.png")
    config = LAIONAestheticsConfig(root=str(tmp_path), num_val=3, image_size=8)
    assert ids(build_dataset(config, "val")) == ["img7", "img6", "img5"]
    assert ids(build_dataset(config, "train")) == [f"img{i}" for i in range(5)]


def test_sa_med2d_keys_in_annotation_order_with_stride_split(tmp_path):
    keys = [f"ct_{i:02d}" for i in (5, 3, 9, 1, 0, 7)]
    (tmp_path / "annotations").mkdir()
    annotations = {f"images/{k}.png": [f"masks/{k}_0.png"] for k in keys}
    (tmp_path / "annotations" / "SAMed2D_v1.json").write_text(json.dumps(annotations))
    for k in keys:
        write_png(tmp_path / "images" / f"{k}.png")
    config = SAMed2DConfig(root=str(tmp_path), num_val=2, image_size=8)
    assert ids(build_dataset(config, "val")) == [keys[0], keys[3]]
    assert ids(build_dataset(config, "train")) == [keys[i] for i in (1, 2, 4, 5)]


def test_satin_takes_every_tenth_image_of_each_subset(tmp_path):
    for subset, count in [("RSSCN7", 20), ("WHU-RS19", 31)]:
        for i in range(count):
            write_png(tmp_path / subset / f"{i:06d}.png")
    config = SATINConfig(root=str(tmp_path), subsets=("RSSCN7", "WHU-RS19"), image_size=8)
    val, train = build_dataset(config, "val"), build_dataset(config, "train")
    assert ids(val) == ["RSSCN7/000000", "RSSCN7/000010"] + [
        f"WHU-RS19/{i:06d}" for i in (0, 10, 20)
    ]
    assert len(train) == 51 - 5
    with pytest.raises(UserError, match="SATIN subset 'MLRSNet'"):
        build_dataset(SATINConfig(root=str(tmp_path), subsets=("MLRSNet",)), "val")


def test_coco_reads_the_images_list_with_category_zero(tmp_path):
    (tmp_path / "annotations").mkdir()
    for split in ("train", "val"):
        names = [f"COCO_{split}2014_{i:012d}.jpg" for i in (42, 7)]
        images = [{"id": i, "file_name": n} for i, n in enumerate(names)]
        (tmp_path / "annotations" / f"instances_{split}2014.json").write_text(
            json.dumps({"images": images, "annotations": []})
        )
        for n in names:
            path = tmp_path / f"{split}2014" / n
            path.parent.mkdir(exist_ok=True)
            Image.new("RGB", (20, 16), "red").save(path, format="JPEG")
    val = build_dataset(COCOConfig(root=str(tmp_path), image_size=8), "val")
    assert ids(val) == ["COCO_val2014_000000000042", "COCO_val2014_000000000007"]
    assert val[1]["category"] == 0
    (tmp_path / "annotations" / "instances_train2014.json").unlink()
    with pytest.raises(UserError, match=r"instances_train2014\.json"):
        build_dataset(COCOConfig(root=str(tmp_path)), "train")
