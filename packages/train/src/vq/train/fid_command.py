"""``fid``: cache a dataset split's Inception statistics, or measure FID between folders.

    uv run fid configs/vqgan/8192_dd2_aglwg075_imagenet_ddp.py [--train] [--out PATH]
    uv run fid --images samples/ --reference real/ [--save-stats samples.npz]
    uv run fid --images samples/ --reference pretrained/fid/imagenet_val_256.npz

``fid CONFIG`` writes the statistics of the val (``--train``: train) split of the config's
``data`` through the ``none`` transform to ``pretrained/fid/<kind>_<split>_<size>.npz``;
outside torchrun, ``--nproc N`` starts N processes (default: one per GPU).

``fid --images DIR --reference DIR_OR_NPZ`` is torch-fidelity's everyday use: every image
file under DIR (recursively, sorted by path, hidden files and folders skipped) is read as
RGB uint8 at its stored size and goes through the evaluation's Inception
(``vq.train.metrics.fid``); the reference is another folder, read the same way, or
statistics this code wrote (``fid CONFIG`` or ``--save-stats``). One line goes to stdout:
the FID and, from 10 images on, the Inception Score of DIR. ``--save-stats`` also writes
DIR's statistics. It runs in one process, on the first GPU if there is one.
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vq.core import distributed, launch
from vq.core.configfile import apply_overrides, load_config, parse_assignments
from vq.core.data import LoaderConfig
from vq.core.errors import UserError
from vq.core.logging import LOGGER, progress, setup_logging
from vq.train.cli import _guarded
from vq.train.image_files import IMAGE_SUFFIXES, load_rgb
from vq.train.metrics import (
    FeatureAccumulator,
    FIDStatistics,
    InceptionFeatures,
    fid_statistics_path,
    frechet_distance_from_features,
    inception_score,
)
from vq.train.metrics.fid import FID_CACHE_DIR
from vq.train.metrics.inception import FEATURE_EXTRACTOR, FEATURES, INCEPTION_WEIGHTS, LOGITS

FOLDER_PREPROCESSING = "folder: every image file as stored, RGB uint8, no resize"
FOLDER_BATCH_SIZE = 64  # torch-fidelity's default
FOLDER_WORKERS = 4
FEATURE_DIM = 2048
ISC_SPLITS = 10  # torch-fidelity's default: IS needs at least this many images

# ------------------------------------------------------------------ parser ----------


def add_inception_argument(parser: argparse.ArgumentParser) -> None:
    """``--inception F``, as ``fid``, ``val`` and ``test`` take it."""
    parser.add_argument(
        "--inception",
        type=Path,
        default=INCEPTION_WEIGHTS,
        metavar="F",
        help=f"FID Inception weights (default {INCEPTION_WEIGHTS})",
    )


def build_fid_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fid",
        description="Cache the Inception statistics of a dataset's split (transform 'none'), "
        "or print the FID between a folder of images and a folder or statistics file.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=None,
        help="a run config file (its .data is used) or a dataset config file",
    )
    source.add_argument(
        "--images", type=Path, default=None, metavar="DIR", help="a folder of images to measure"
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        metavar="DIR_OR_NPZ",
        help="with --images: a folder of images or a statistics .npz written by `fid`",
    )
    parser.add_argument(
        "--save-stats",
        type=Path,
        default=None,
        metavar="NPZ",
        help="with --images: also write the statistics of --images to this .npz",
    )
    parser.add_argument(
        "--train", action="store_true", help="CONFIG: the train split (default: val)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"CONFIG: output .npz (default {FID_CACHE_DIR}/<kind>_<split>_<size>.npz)",
    )
    parser.add_argument("--config-options", nargs="*", default=[], metavar="K:V")
    parser.add_argument("--override", nargs="*", default=[], metavar="PATH:V")
    add_inception_argument(parser)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="N",
        help=f"images per process and batch (default: the config's loader; "
        f"--images: {FOLDER_BATCH_SIZE})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help=f"image-reading worker processes (default: the config's loader; "
        f"--images: {FOLDER_WORKERS})",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="CONFIG: processes to start outside torchrun (default: one per GPU, one on CPU)",
    )
    return parser


def _check_options(args: argparse.Namespace) -> None:
    """Options that belong to the other mode, and numbers out of range."""
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers {args.workers}: must be at least 0")
    if args.images is None:
        for name in ("reference", "save_stats"):
            if getattr(args, name) is not None:
                raise UserError(f"--{name.replace('_', '-')} goes with --images, not CONFIG")
        return
    if args.reference is None:
        raise UserError("--images needs --reference DIR_OR_NPZ (a folder or a statistics .npz)")
    config_only = {
        "--train": args.train,
        "--out": args.out is not None,
        "--config-options": bool(args.config_options),
        "--override": bool(args.override),
    }
    for option, given in config_only.items():
        if given:
            hint = " (use --save-stats)" if option == "--out" else ""
            raise UserError(f"{option} goes with CONFIG, not --images{hint}")
    if (args.nproc or 1) > 1 or launch.under_torchrun():
        raise UserError("--images runs in one process: drop --nproc and torchrun")
    if args.save_stats is not None and args.save_stats.suffix != ".npz":
        raise UserError(f"--save-stats {args.save_stats}: the file name must end in .npz")


def _dataset_of(args: argparse.Namespace) -> tuple[Any, LoaderConfig] | None:
    """What ``fid`` checks and builds before it reads any image: CONFIG's dataset and
    loader, or None for ``--images`` (folders are checked when they are listed)."""
    _check_options(args)
    if args.images is not None:
        return None
    config = load_config(args.config, parse_assignments(args.config_options))
    config = apply_overrides(config, parse_assignments(args.override))
    data = getattr(config, "data", config)
    if not hasattr(data, "kind") or not callable(getattr(data, "build", None)):
        raise UserError(
            f"{args.config} builds a {type(config).__name__}: expected a run config with .data "
            "or a dataset config"
        )
    loader = getattr(config, "loader", None) or LoaderConfig(
        batch_size=32, batch_size_is_global=False, workers=2
    )
    if args.batch_size is not None:
        loader = loader.model_copy(
            update={"batch_size": args.batch_size, "batch_size_is_global": False}
        )
    if args.workers is not None:
        loader = loader.model_copy(update={"workers": args.workers})
    return data, loader


# ------------------------------------------------------------------ CONFIG ----------


def run_fid(args: argparse.Namespace, argv: list[str]) -> int:
    """Statistics of a split of CONFIG's data, written by rank 0 (a collective)."""
    # imported here: the datasets pull in torchvision, seconds that --images does not need
    from vq.train.evaluation.reference import reference_name, reference_statistics

    found = _dataset_of(args)
    assert found is not None, "run_fid is the CONFIG mode"
    data, loader = found
    split = "train" if args.train else "val"
    out = args.out or fid_statistics_path(reference_name(data, split))
    device = launch.init_process_group()
    try:
        setup_logging(None)
        inception = InceptionFeatures(args.inception).to(device)
        stats = reference_statistics(data, split, inception, loader, device)
        if distributed.is_main():
            stats.save(out)
            LOGGER.info(
                "FID statistics of %s (%d images) written to %s",
                stats.metadata["name"],
                stats.metadata["image_count"],
                out,
            )
        distributed.barrier()
    finally:
        launch.destroy_process_group()
    return 0


# ------------------------------------------------------------------ folders ---------


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def image_files(folder: Path, option: str) -> list[Path]:
    """The image files under ``folder``, recursively, sorted by relative path."""
    if not folder.exists():
        raise UserError(f"{option} {folder}: no such folder (resolved: {folder.resolve()})")
    if not folder.is_dir():
        raise UserError(f"{option} {folder}: not a folder")
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    )
    if len(files) < 2:
        found = "no image files" if not files else f"only one image file ({files[0].name})"
        suffixes = " ".join(sorted(IMAGE_SUFFIXES))
        raise UserError(f"{option} {folder}: {found}; FID needs at least 2 ({suffixes})")
    return files


class ImageFiles(Dataset):
    """``(index, image)`` of each file: uint8 ``(3, H, W)``, or the one-line reason it could
    not be read (an exception from a worker process would arrive with its traceback)."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | str]:
        path = self.files[index]
        try:
            array = np.array(load_rgb(path))  # (H, W, 3) uint8
        except Exception as error:  # any decoder failure: truncated, not an image, bomb...
            return index, f"cannot read image {path}: {_one_line(error)}"
        return index, torch.from_numpy(array).permute(2, 0, 1)  # (3, H, W)


@torch.no_grad()
def folder_rows(
    files: list[Path],
    inception: InceptionFeatures,
    device: torch.device,
    batch_size: int,
    workers: int,
    desc: str,
) -> dict[str, torch.Tensor]:
    """Inception rows of ``files`` in file order: ``features`` (N, 2048), ``logits`` (N, 1008).

    Only images of one size share a batch: each size has its own queue, flushed when it is
    full; when all queues together hold two batches, the longest is flushed, which bounds
    memory whatever the mix of sizes. The accumulator puts rows back in file order.
    """
    loader = DataLoader(ImageFiles(files), batch_size=None, num_workers=workers)
    rows = FeatureAccumulator(num_samples=len(files))
    queues: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = {}
    bar = progress(len(files), desc=desc, unit="img")

    def flush(size: tuple[int, int]) -> None:
        queue = queues.pop(size)
        images = torch.stack([image for _, image in queue]).to(device)  # (B, 3, H, W) uint8
        index = torch.tensor([i for i, _ in queue])  # (B,)
        rows.update(inception(images), index=index)
        bar.update(len(queue))

    try:
        for index, image in loader:
            if isinstance(image, str):
                raise UserError(image)
            size = (image.shape[1], image.shape[2])
            queues.setdefault(size, []).append((int(index), image))
            if len(queues[size]) >= batch_size:
                flush(size)
            elif sum(map(len, queues.values())) >= 2 * batch_size:
                flush(max(queues, key=lambda s: len(queues[s])))
        for size in list(queues):
            flush(size)
    finally:
        bar.close()
    return rows.gather()


def load_reference_statistics(path: Path) -> FIDStatistics:
    """A statistics ``.npz`` of this code, with the 2048-d shapes the features need."""
    if path.suffix != ".npz":
        raise UserError(
            f"--reference {path}: neither a folder of images nor a statistics .npz of `fid`"
        )
    if not zipfile.is_zipfile(path):
        raise UserError(f"--reference {path}: not an .npz archive (statistics written by `fid`)")
    with np.load(path, allow_pickle=False) as archive:
        keys = sorted(archive.files)
    if not {"mu", "sigma", "metadata"} <= set(keys):
        raise UserError(
            f"--reference {path} holds {', '.join(keys) or 'nothing'}, not the mu, sigma and "
            "metadata of statistics written by `fid`"
        )
    try:
        stats = FIDStatistics.load(path, expect={"feature_extractor": FEATURE_EXTRACTOR})
    except (OSError, ValueError, zipfile.BadZipFile) as error:  # bad JSON, object arrays...
        raise UserError(f"--reference {path}: unreadable statistics: {_one_line(error)}") from error
    if stats.mu.shape != (FEATURE_DIM,) or stats.sigma.shape != (FEATURE_DIM, FEATURE_DIM):
        raise UserError(
            f"--reference {path}: mu {stats.mu.shape} and sigma {stats.sigma.shape}, expected "
            f"({FEATURE_DIM},) and ({FEATURE_DIM}, {FEATURE_DIM})"
        )
    if not (np.isfinite(stats.mu).all() and np.isfinite(stats.sigma).all()):
        raise UserError(f"--reference {path}: the statistics are not finite")
    return stats


def folder_statistics(folder: Path, features: torch.Tensor) -> FIDStatistics:
    return FIDStatistics.from_features(
        features,
        name=folder.resolve().name,
        source=str(folder.resolve()),
        preprocessing=FOLDER_PREPROCESSING,
        feature_extractor=FEATURE_EXTRACTOR,
    )


def _fixed(value: float) -> str:
    # round-off leaves a self-FID of about -1e-9; -0.0 + 0.0 is 0.0, so it prints 0.0000
    return f"{round(value, 4) + 0.0:.4f}"


def run_folders(args: argparse.Namespace) -> dict[str, float]:
    """FID (and IS from 10 images on) of ``--images`` against ``--reference``; prints one
    line to stdout and returns the numbers (``fid``, ``isc_mean``, ``isc_std``)."""
    _check_options(args)
    images = image_files(args.images, "--images")
    reference: Path = args.reference
    same_folder = reference.is_dir() and reference.resolve() == args.images.resolve()
    ref_files, ref_stats = None, None
    if reference.is_dir():
        ref_files = images if same_folder else image_files(reference, "--reference")
    elif reference.exists():
        ref_stats = load_reference_statistics(reference)
    else:
        raise UserError(f"--reference {reference}: no such folder or file")
    inception = InceptionFeatures(args.inception)  # a missing file is a UserError
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    inception = inception.to(device)
    batch_size = args.batch_size or FOLDER_BATCH_SIZE
    workers = FOLDER_WORKERS if args.workers is None else args.workers
    workers = min(workers, os.cpu_count() or 1)

    rows = folder_rows(images, inception, device, batch_size, workers, str(args.images))
    if ref_files is not None:
        if same_folder:  # against itself: one pass
            ref_features = rows[FEATURES]
        else:
            found = folder_rows(ref_files, inception, device, batch_size, workers, str(reference))
            ref_features = found[FEATURES]  # (M, 2048)
        ref_stats = FIDStatistics.from_features(ref_features)  # (2048,), (2048, 2048)
    assert ref_stats is not None
    if args.save_stats is not None:
        folder_statistics(args.images, rows[FEATURES]).save(args.save_stats)

    results = {"fid": frechet_distance_from_features(rows[FEATURES], ref_stats.mu, ref_stats.sigma)}
    line = f"FID {_fixed(results['fid'])}"
    if len(images) >= ISC_SPLITS:
        results["isc_mean"], results["isc_std"] = inception_score(rows[LOGITS], ISC_SPLITS)
        line += f" | IS {_fixed(results['isc_mean'])} +- {_fixed(results['isc_std'])}"
    count = ref_stats.metadata.get("image_count", "?")
    line += f" | {len(images)} images of {args.images} vs {count} of {reference}"
    if args.save_stats is not None:
        line += f" | statistics of {args.images} written to {args.save_stats}"
    print(line, flush=True)
    return results


# ------------------------------------------------------------------ entry points ----


def _run_folders_command(args: argparse.Namespace) -> int:
    run_folders(args)
    return 0


def _validate_only(args: argparse.Namespace) -> int:
    _dataset_of(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``fid``: folders in this process; CONFIG relaunched under torchrun for ``--nproc`` > 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_fid_parser().parse_args(argv)
    if args.images is not None:
        return launch.run_here(lambda: _guarded(_run_folders_command, args))
    return launch.run_or_relaunch(
        args.nproc,
        "vq.train.fid_command",
        argv,
        run=lambda: _guarded(run_fid, args, argv),
        validate=lambda: _guarded(_validate_only, args),
    )


def fid_main() -> None:
    launch.exit_command(main())


if __name__ == "__main__":  # python -m vq.train.fid_command ... (torchrun ranks)
    launch.exit_command(main())
