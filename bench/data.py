"""Data throughput: JPEG decode + reference augmentation, images/s per DataLoader worker count.

    uv run python bench/data.py                      # 200 generated 500x375 JPEGs
    uv run python bench/data.py --root data/ffhq-256/train --workers 0 2 4

The generated images are smooth random fields plus noise, so their JPEG size (~30-60 kB)
and decode cost resemble photographs rather than flat colour. Each configuration reads the
whole folder ``--epochs`` times after one warm-up batch; the table gives images/s and the
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

from vq.train.data import FolderConfig, build_dataset, collate


def generate_jpegs(folder: Path, count: int, width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = rng.integers(0, 256, (height // 25 + 1, width // 25 + 1, 3), dtype=np.uint8)
        smooth = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        noise = rng.normal(0, 12, (height, width, 3))
        pixels = np.clip(np.asarray(smooth, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


def images_per_second(
    root: Path, augmentation: str, image_size: int, workers: int, batch_size: int, epochs: int
) -> float:
    config = FolderConfig(
        root=str(root), split_rule="all", image_size=image_size, augmentation=augmentation
    )
    dataset = build_dataset(config, "train")
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
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
    args = parser.parse_args()
    torch.set_num_threads(1)  # the transforms are PIL-bound; keep the main process honest

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            root = Path(tmp)
            generate_jpegs(root, args.count, *args.size)
            source = f"{args.count} generated {args.size[0]}x{args.size[1]} JPEGs"
        else:
            source = str(root)
        print(f"source: {source}; output {args.image_size} px; batch {args.batch_size}")
        print(f"{'augmentation':<13}{'workers':>8}{'images/s':>11}{'vs 0 workers':>14}")
        for augmentation in args.augmentations:
            base = None
            for workers in args.workers:
                rate = images_per_second(
                    root, augmentation, args.image_size, workers, args.batch_size, args.epochs
                )
                base = base or rate
                print(f"{augmentation:<13}{workers:>8}{rate:>11.1f}{rate / base:>13.2f}x")


if __name__ == "__main__":
    main()
