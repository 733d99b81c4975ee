"""Data throughput: folders against tar shards, images/s per DataLoader worker count.

    uv run python bench/data.py                      # 200 generated 500x375 JPEGs
    uv run python bench/data.py --root data/ffhq-256/train --workers 0 2 4

The generated images are smooth random fields plus noise, so their JPEG size (~30-60 kB)
and decode cost resemble photographs rather than flat colour. The folder is written into
tar shards once (``--samples-per-shard``); then every configuration reads the whole set
``--epochs`` times in a seeded random order after one warm-up batch, from the folder, from
the shards in the same order (``order="global"``: one seek per sample) and shard by shard
(``order="shards"``). The table gives images/s, shards over folder, and each source's
speed-up over ``workers=0``. ``strong`` is the tokenizer-training pipeline
(RandomResizedCrop), ``none`` the validation one (Resize + CenterCrop).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vq.train.data import FolderConfig, ShardsConfig, build_dataset, collate
from vq.train.data.shard_writer import write_shards


def generate_jpegs(folder: Path, count: int, width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = rng.integers(0, 256, (height // 25 + 1, width // 25 + 1, 3), dtype=np.uint8)
        smooth = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        noise = rng.normal(0, 12, (height, width, 3))
        pixels = np.clip(np.asarray(smooth, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


SOURCES = ("folder", "shards", "shard order")


def dataset_of(source: str, root: Path, shards: Path, augmentation: str, image_size: int):
    fields = {"image_size": image_size, "augmentation": augmentation}
    if source == "folder":
        return build_dataset(FolderConfig(root=str(root), split_rule="all", **fields), "train")
    order = "global" if source == "shards" else "shards"
    return build_dataset(ShardsConfig(root=str(shards), order=order, **fields), "train")


def images_per_second(dataset, workers: int, batch_size: int, epochs: int) -> float:
    permutation = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
    chosen = dataset.epoch_order(0, seed=0, world=1) if hasattr(dataset, "epoch_order") else None
    order = chosen if chosen is not None else permutation.tolist()
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=order,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
    )
    next(iter(loader))  # warm-up: worker start-up and first-touch costs
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            seen += len(batch["id"])
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="folder of images (default: generate)")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, nargs=2, default=(500, 375), metavar=("W", "H"))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--augmentations", nargs="+", default=["strong", "none"])
    parser.add_argument("--samples-per-shard", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the transforms are PIL-bound; keep the main process honest

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            root = Path(tmp) / "images"
            root.mkdir()
            generate_jpegs(root, args.count, *args.size)
            source = f"{args.count} generated {args.size[0]}x{args.size[1]} JPEGs"
        else:
            source = str(root)
        shards = Path(tmp) / "shards"
        folder = build_dataset(FolderConfig(root=str(root), split_rule="all"), "train")
        write_shards(folder, shards / "train", "train", args.samples_per_shard)
        print(f"source: {source}; {args.samples_per_shard} per shard; output {args.image_size} px")
        header = "".join(f"{name:>13}" for name in SOURCES)
        print(f"{'augmentation':<13}{'workers':>8}{header}{'shards/folder':>15}  vs 0 workers")
        for augmentation in args.augmentations:
            base: dict[str, float] = {}
            for workers in args.workers:
                rates = {
                    name: images_per_second(
                        dataset_of(name, root, shards, augmentation, args.image_size),
                        workers,
                        args.batch_size,
                        args.epochs,
                    )
                    for name in SOURCES
                }
                for name, rate in rates.items():
                    base.setdefault(name, rate)
                cells = "".join(f"{rates[name]:>13.1f}" for name in SOURCES)
                speedups = " ".join(f"{rates[name] / base[name]:.2f}x" for name in SOURCES)
                ratio = rates["shards"] / rates["folder"]
                print(f"{augmentation:<13}{workers:>8}{cells}{ratio:>14.2f}x  {speedups}")


if __name__ == "__main__":
    main()
