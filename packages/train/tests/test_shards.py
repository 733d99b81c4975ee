"""Tar shards (WebDataset layout): the ``shard`` command, items and runs equal to the folder
dataset's, exact resume, the shard-by-shard order, and every kind of bad input."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vq.core.data import LoaderConfig, ResumableSampler, build_loader
from vq.core.errors import UserError
from vq.train.cli import train_main
from vq.train.data import (
    ImageFolderConfig,
    LAIONAestheticsConfig,
    PhotosConfig,
    ShardsConfig,
    build_dataset,
    collate,
)
from vq.train.data.shard_writer import write_shards
from vq.train.data.shards import buffer_shuffle
from vq.train.shard_command import shard_main

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "configs" / "demo" / "autoencoder_photos.py"
SEED = 11


def make_image_folder(root: Path, per_class: int = 5) -> Path:
    """``root/{train,val}/{cat,dog}/``: small noisy JPEGs (one PNG), a name with dots."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
                suffix = ".png" if i == 0 else ".JPEG"
                Image.fromarray(pixels).save(folder / f"img.{i}{suffix}")
    return root


def write_config(path: Path, body: str) -> Path:
    path.write_text(f"from vq.train.data import *\n\ndef config():\n    return {body}\n")
    return path


def shard_folder(tmp_path: Path, per_shard: int = 3, **fields) -> tuple[Path, ImageFolderConfig]:
    folder = ImageFolderConfig(root=str(make_image_folder(tmp_path / "folder")), **fields)
    out = tmp_path / "shards"
    for split in ("train", "val"):
        write_shards(build_dataset(folder, split), out / split, split, per_shard)
    return out, folder


def items(dataset, keys) -> list[dict]:
    """``dataset[(i)]`` under the seed the loop would use, for each index in ``keys``."""
    out = []
    for i in keys:
        torch.manual_seed(1000 + i)
        out.append(dataset[i])
    return out


def assert_same_items(a: list[dict], b: list[dict]) -> None:
    assert [x["id"] for x in a] == [y["id"] for y in b]
    assert [x["category"] for x in a] == [y["category"] for y in b]
    for x, y in zip(a, b):
        assert torch.equal(x["original_image"], y["original_image"]), x["id"]


def test_shards_hold_the_webdataset_layout_and_give_the_folder_items(tmp_path: Path) -> None:
    out, folder = shard_folder(tmp_path, image_size=16, augmentation="strong")
    train = build_dataset(folder, "train")
    sharded = build_dataset(
        ShardsConfig(root=str(out), image_size=16, augmentation="strong"), "train"
    )
    assert len(sharded) == len(train) == 10 and sharded.classes == train.classes == ["cat", "dog"]
    assert_same_items(items(train, range(10)), items(sharded, range(10)))

    index = json.loads((out / "train" / "index.json").read_text())
    assert [(s["name"], s["samples"]) for s in index["shards"]] == [
        ("train-000000.tar", 3),
        ("train-000001.tar", 3),
        ("train-000002.tar", 3),
        ("train-000003.tar", 1),
    ]
    with tarfile.open(out / "train" / "train-000000.tar") as tar:
        names = tar.getnames()
        assert names[:3] == ["000000000000.cls", "000000000000.json", "000000000000.png"]
        assert names[5] == "000000000001.jpg"
        assert json.loads(tar.extractfile(names[1]).read()) == {"id": "cat/img.0", "category": 0}
        # the image member is the source file, byte for byte
        source = Path(folder.root) / "train" / "cat" / "img.1.JPEG"
        assert tar.extractfile(names[5]).read() == source.read_bytes()
    with tarfile.open(out / "train" / "train-000003.tar") as tar:
        assert tar.extractfile("000000000009.cls").read() == b"1"


def test_the_loop_sampler_gives_the_same_batches_from_shards_as_from_folders(
    tmp_path: Path,
) -> None:
    out, folder = shard_folder(tmp_path, image_size=16, augmentation="strong")
    datasets = [
        build_dataset(folder, "train"),
        build_dataset(ShardsConfig(root=str(out), image_size=16, augmentation="strong"), "train"),
    ]
    batches = []
    for dataset in datasets:
        loader, sampler = build_loader(
            dataset,
            LoaderConfig(batch_size=4, workers=0),
            seed=SEED,
            device=torch.device("cpu"),
            collate_fn=collate,
        )
        sampler.start(1, 4)  # second epoch, resumed after one batch
        batches.append(list(loader))
    assert len(batches[0]) == len(batches[1]) == 1
    for a, b in zip(*batches):
        assert a["id"] == b["id"] and torch.equal(a["original_image"], b["original_image"])


def test_a_laion_style_file_list_keeps_its_order_and_workers_read_the_same(
    tmp_path: Path,
) -> None:
    root = tmp_path / "laion"
    names = [f"{i:03d}_x.png" for i in (7, 2, 9, 4, 1, 8, 3, 6)]  # annotation order, unsorted
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "v2_6.5plus.tsv").write_text(
        "".join(f"{name}\ta caption\t6.{i}\n" for i, name in enumerate(names))
    )
    rng = np.random.default_rng(1)
    (root / "v2_6.5plus").mkdir()
    for name in names:
        pixels = rng.integers(0, 256, (18, 14, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "v2_6.5plus" / name)
    laion = LAIONAestheticsConfig(root=str(root), num_val=2, image_size=8, augmentation="weak")
    write_shards(build_dataset(laion, "train"), tmp_path / "s" / "train", "train", 2)
    sharded = build_dataset(
        ShardsConfig(root=str(tmp_path / "s"), image_size=8, augmentation="weak"), "train"
    )
    assert [sharded.id(i) for i in range(len(sharded))] == [n[:-4] for n in names[:6]]
    assert_same_items(items(build_dataset(laion, "train"), range(6)), items(sharded, range(6)))

    def batches(workers: int) -> list[dict]:
        config = LoaderConfig(batch_size=2, workers=workers, persistent_workers=False)
        loader, _ = build_loader(
            sharded, config, seed=SEED, device=torch.device("cpu"), collate_fn=collate
        )
        return list(loader)

    for a, b in zip(batches(0), batches(2), strict=True):  # forked workers open their own files
        assert a["id"] == b["id"] and torch.equal(a["original_image"], b["original_image"])


def test_shard_order_refuses_a_shard_count_that_does_not_divide_at_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = shard_folder(tmp_path)  # 4 train shards, 4 val shards
    monkeypatch.setattr("vq.core.distributed.world_size", lambda: 3)
    config = ShardsConfig(root=str(out), order="shards")
    assert "4 shards of" in _build_error(config) and "across 3 processes" in _build_error(config)
    assert len(build_dataset(ShardsConfig(root=str(out)), "train")) == 10  # global: any count
    monkeypatch.setattr("vq.core.distributed.world_size", lambda: 2)
    assert len(build_dataset(config, "train")) == 10


def _sharded_photos(tmp_path: Path) -> Path:
    out = tmp_path / "photo_shards"
    write_shards(build_dataset(PhotosConfig(image_size=16), "train"), out / "train", "train", 8)
    return out


def _train(work: Path, name: str, *options: str) -> dict[str, torch.Tensor]:
    argv = [
        name,
        str(DEMO),
        "--work-dirs",
        str(work),
        "--seed",
        str(SEED),
        "--config-options",
        "iters:4",
        "image_size:16",
        "batch_size:4",
        "--override",
        ".loop.checkpoint_interval:2",
        *options,
    ]
    assert train_main(argv) == 0
    checkpoint = work / name / "checkpoints" / "iter_4"
    return load_file(str(checkpoint / "models" / "model.safetensors"))


def _shards_data(root: Path, order: str = "global") -> str:
    return (
        f".data:dict(kind='shards', root='{root}', image_size=16, augmentation='strong', "
        f"order='{order}', shuffle_buffer=5)"
    )


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_run_from_shards_equals_the_run_from_photos_and_resumes_bit_identically(
    tmp_path: Path,
) -> None:
    shards = _sharded_photos(tmp_path)
    photos = _train(tmp_path, "photos")
    sharded = _train(tmp_path, "sharded", _shards_data(shards))
    assert _equal(photos, sharded)
    # resumed mid-epoch (45 samples, batch 4) from the iteration-2 checkpoint
    resumed = _train(
        tmp_path,
        "resumed",
        _shards_data(shards),
        "--load-from",
        str(tmp_path / "sharded" / "checkpoints" / "iter_2"),
    )
    assert _equal(sharded, resumed)


@pytest.mark.slow
def test_shard_order_trains_differently_and_resumes_bit_identically(tmp_path: Path) -> None:
    shards = _sharded_photos(tmp_path)
    straight = _train(tmp_path, "straight", _shards_data(shards, "shards"))
    resumed = _train(
        tmp_path,
        "resumed",
        _shards_data(shards, "shards"),
        "--load-from",
        str(tmp_path / "straight" / "checkpoints" / "iter_2"),
    )
    assert _equal(straight, resumed)
    assert not _equal(straight, _train(tmp_path, "global", _shards_data(shards)))


def test_shard_order_deals_whole_shards_to_ranks_and_is_seeded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = shard_folder(tmp_path, per_shard=2)  # 10 samples: 5 shards of 2
    sharded = build_dataset(ShardsConfig(root=str(out), order="shards", shuffle_buffer=1), "train")
    with pytest.raises(UserError, match="5 shards of .* do not divide across 2 processes"):
        sharded.epoch_order(0, seed=SEED, world=2)
    order = sharded.epoch_order(0, seed=SEED, world=1)
    assert sorted(order) == list(range(10))
    # a buffer of one keeps each shard's samples together and in order
    shards = [order[i : i + 2] for i in range(0, 10, 2)]
    assert all(b == a + 1 and a % 2 == 0 for a, b in shards)
    assert order == sharded.epoch_order(0, seed=SEED, world=1)
    assert order != sharded.epoch_order(1, seed=SEED, world=1)

    out4, _ = shard_folder(tmp_path / "four", per_shard=3)  # 4 shards: 3, 3, 3, 1 samples
    four = build_dataset(ShardsConfig(root=str(out4), order="shards"), "train")
    order = four.epoch_order(0, seed=SEED, world=2)
    ranks = [
        ResumableSampler(10, seed=SEED, rank=r, world=2, order=lambda e: order) for r in (0, 1)
    ]
    shard_of = four.index.shards
    for rank, sampler in enumerate(ranks):
        mine = sampler.indices(0)
        assert mine == order[rank::2]
        assert len(mine) == len(order) // 2  # every rank stops at the shortest rank's count
        sampler.start(0, 2)  # resumed two samples into the epoch
        assert [index for index, _ in sampler] == mine[2:]
    # shards of 3, 3, 3, 1 dealt in pairs: the shorter rank has 4 samples, so a batch of 5
    # per rank is refused at the start rather than giving epochs without a batch
    monkeypatch.setattr("vq.core.distributed.world_size", lambda: 2)
    two_ranks = build_dataset(ShardsConfig(root=str(out4), order="shards"), "train")
    config = LoaderConfig(batch_size=10, workers=0)
    with pytest.raises(UserError, match="each process gets 4 samples per epoch, fewer than"):
        build_loader(two_ranks, config, seed=SEED, device=torch.device("cpu"))
    assert not {int(shard_of[i]) for i in ranks[0].indices(0)} & {
        int(shard_of[i]) for i in ranks[1].indices(0)
    }


def test_buffer_shuffle_is_a_seeded_permutation() -> None:
    samples = np.arange(50)
    a = buffer_shuffle(samples, 8, np.random.default_rng(3))
    assert sorted(a.tolist()) == list(range(50))
    assert a.tolist() == buffer_shuffle(samples, 8, np.random.default_rng(3)).tolist()
    assert a.tolist() != samples.tolist()
    # a sample leaves at most buffer - 1 places before its position
    assert all(position >= value - 7 for position, value in enumerate(a.tolist()) if value >= 8)


def test_shard_command_writes_every_split_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_image_folder(tmp_path / "folder")
    config = write_config(tmp_path / "data.py", f"ImageFolderConfig(root={str(root)!r})")
    out = tmp_path / "out"
    assert shard_main([str(config), str(out), "--samples-per-shard", "4"]) == 0
    assert "train: 10 samples in 3 shards" in capsys.readouterr().out
    assert (out / "val" / "val-000002.tar").is_file()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert shard_main([str(config), str(out)]) == 2
    assert "already holds shards" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before

    missing = write_config(tmp_path / "missing.py", f"ImageFolderConfig(root={str(tmp_path)!r})")
    assert shard_main([str(missing), str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "new").exists()
    assert shard_main([str(config), str(tmp_path / "new"), "--samples-per-shard", "0"]) == 2
    assert "--samples-per-shard must be at least 1" in capsys.readouterr().err


def _build_error(config: ShardsConfig) -> str:
    with pytest.raises(UserError) as error:
        build_dataset(config, "train")
    return str(error.value)


def test_a_missing_or_truncated_shard_is_an_error_or_skipped_with_a_count(tmp_path: Path) -> None:
    out, _ = shard_folder(tmp_path)
    split = out / "train"
    shard = split / "train-000001.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    message = _build_error(ShardsConfig(root=str(out)))
    assert f"shard {shard} has {len(data) // 2} bytes, the index says {len(data)}" in message
    shard.unlink()
    assert f"shard {shard} is missing" in _build_error(ShardsConfig(root=str(out)))

    skipping = build_dataset(ShardsConfig(root=str(out), on_bad_image="skip"), "train")
    batch = collate([skipping[i] for i in range(len(skipping))])
    assert batch["skipped"] == 3 and len(batch["id"]) == 7


def test_an_index_that_disagrees_with_the_shards_is_an_error(tmp_path: Path) -> None:
    out, _ = shard_folder(tmp_path)
    index_file = out / "train" / "index.json"
    index = json.loads(index_file.read_text())
    index["shards"][0]["samples"] = 4
    index_file.write_text(json.dumps(index))
    assert "train-000000.tar: index.json says 4, index.npz has 3" in _build_error(
        ShardsConfig(root=str(out))
    )
    index["shards"] = index["shards"][:2]
    index_file.write_text(json.dumps(index))
    assert "disagrees with itself" in _build_error(ShardsConfig(root=str(out)))
    index_file.write_text(json.dumps({**index, "shards": [{"name": "x.tar"}]}))
    assert "lacks or mistypes an entry: KeyError('samples')" in _build_error(
        ShardsConfig(root=str(out))
    )
    index_file.write_text("{")
    assert "is not valid JSON" in _build_error(ShardsConfig(root=str(out)))
    index_file.unlink()
    assert "does not exist" in _build_error(ShardsConfig(root=str(out)))


def test_an_undecodable_sample_follows_on_bad_image_like_the_folder(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "folder")
    (root / "train" / "dog" / "img.3.JPEG").write_bytes(b"not a jpeg")
    folder = ImageFolderConfig(root=str(root), on_bad_image="skip")
    write_shards(build_dataset(folder, "train"), tmp_path / "s" / "train", "train", 4)
    strict = build_dataset(ShardsConfig(root=str(tmp_path / "s")), "train")
    with pytest.raises(UserError, match=r"cannot read image dog/img\.3\.jpg in .*train-000002"):
        strict[8]
    lenient = build_dataset(ShardsConfig(root=str(tmp_path / "s"), on_bad_image="skip"), "train")
    assert lenient[8] is None and build_dataset(folder, "train")[8] is None


def test_a_url_reads_through_fsspec_and_without_it_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsspec = pytest.importorskip("fsspec")
    out, _ = shard_folder(tmp_path)
    memory = fsspec.filesystem("memory")
    memory.put(str(out), "/vq-test-shards", recursive=True)
    try:
        sharded = build_dataset(ShardsConfig(root="memory://vq-test-shards"), "train")
        local = build_dataset(ShardsConfig(root=str(out)), "train")
        assert_same_items(items(local, range(10)), items(sharded, range(10)))
    finally:
        memory.rm("/vq-test-shards", recursive=True)
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if not installed
    assert "needs fsspec" in _build_error(ShardsConfig(root="s3://bucket/shards"))
    assert len(build_dataset(ShardsConfig(root=str(out)), "train")) == 10  # paths need none
