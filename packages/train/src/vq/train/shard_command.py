"""``shard CONFIG OUT``: write the dataset of a config into tar shards (WebDataset layout).

    uv run shard configs/vqgan/8192_dd2_aglwg075_imagenet_ddp.py /datasets/imagenet-shards \\
        --config-options data_root::/datasets/imagenet --samples-per-shard 1000

CONFIG is a run config (its ``data`` is written) or a file whose ``config()`` returns a
dataset config. Each split goes to ``OUT/<split>/``; train with
``--override ".data:dict(kind='shards', root='OUT', image_size=256, augmentation='strong')"``.
Every split is built (so missing roots and annotation files are reported) and every target
checked before the first byte is written; a split that already has shards is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vq.core.configfile import apply_overrides, load_config, parse_assignments
from vq.core.errors import UserError
from vq.train.cli import _guarded
from vq.train.data.base import SPLITS, Split
from vq.train.data.config import DatasetConfig, build_dataset
from vq.train.data.shard_writer import write_shards
from vq.train.data.shards import INDEX_JSON


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shard", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="run or dataset config file")
    parser.add_argument("out", type=Path, help="folder that receives OUT/<split>/*.tar")
    parser.add_argument("--config-options", nargs="*", default=[], metavar="K:V")
    parser.add_argument("--override", nargs="*", default=[], metavar="PATH:V")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    parser.add_argument(
        "--samples-per-shard",
        type=int,
        default=1000,
        help="samples per tar file (default 1000: ~110 MB shards for ImageNet)",
    )
    return parser


def dataset_config(args: argparse.Namespace) -> DatasetConfig:
    """The dataset config CONFIG names (a run's ``data``), options and overrides applied;
    builds pydantic models only, reads no data."""
    config = load_config(args.config, parse_assignments(args.config_options))
    config = apply_overrides(config, parse_assignments(args.override))
    data = getattr(config, "data", config)
    if not callable(getattr(data, "build", None)):
        raise UserError(f"config {args.config} describes neither a dataset nor a run with data")
    return data


def run_shard(args: argparse.Namespace) -> int:
    if args.samples_per_shard < 1:
        raise UserError(f"--samples-per-shard must be at least 1, got {args.samples_per_shard}")
    data = dataset_config(args)
    splits: list[Split] = list(dict.fromkeys(args.splits))
    for split in splits:
        if (args.out / split / INDEX_JSON).exists():
            raise UserError(f"{args.out / split} already holds shards; remove it or pick OUT")
    datasets = {split: build_dataset(data, split) for split in splits}
    for split, dataset in datasets.items():
        written = write_shards(dataset, args.out / split, split, args.samples_per_shard, log=True)
        print(f"{split}: {written['samples']} samples in {written['shards']} shards")
    return 0


def shard_main(argv: list[str] | None = None) -> int:
    return _guarded(run_shard, build_parser().parse_args(argv))


def main() -> None:
    sys.exit(shard_main())


if __name__ == "__main__":
    main()
