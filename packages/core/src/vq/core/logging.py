"""Run logs: a log file per launch (rank 0), TensorBoard scalars, image grids, progress.

Only rank 0 writes files; other ranks log warnings and errors to stderr with their rank.
"""

from __future__ import annotations

import datetime
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vq.core import distributed

LOGGER = logging.getLogger("vq")


def setup_logging(work_dir: Path | None, header: str = "") -> Path | None:
    """Console logging everywhere; on rank 0 also ``work_dir/logs/<time>.log``."""
    LOGGER.handlers.clear()
    LOGGER.propagate = False
    LOGGER.setLevel(logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    if distributed.is_main():
        console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    else:
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter(f"[rank {distributed.rank()}] %(message)s"))
    LOGGER.addHandler(console)
    if work_dir is None or not distributed.is_main():
        return None
    stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    path = work_dir / "logs" / f"{stamp}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOGGER.addHandler(handler)
    if header:
        with open(path, "a") as f:
            f.write(header.rstrip() + "\n")
    return path


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    return str(datetime.timedelta(seconds=int(seconds)))


def format_scalars(values: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in values.items())


class TensorBoard:
    """Scalars and images on rank 0 (no-op elsewhere, or without TensorBoard installed)."""

    def __init__(self, directory: Path) -> None:
        self.writer: Any = None
        if distributed.is_main():
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                LOGGER.warning("tensorboard is not installed: no TensorBoard events are written")
                return
            self.writer = SummaryWriter(str(directory))

    def scalars(self, tag: str, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{tag}/{k}", v, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def image_grid(rows: dict[str, torch.Tensor], columns: int = 8, pad: int = 2) -> np.ndarray:
    """One uint8 (H, W, 3) grid: a row per entry of ``rows`` ((B, 3, h, w) in [-1, 1])."""
    tiles = []
    for images in rows.values():
        x = images[:columns].detach().float().cpu()
        x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (B, 3, h, w)
        tiles.append(x)
    h = max(t.shape[2] for t in tiles)
    w = max(t.shape[3] for t in tiles)
    n = max(t.shape[0] for t in tiles)
    grid = torch.full(
        (3, len(tiles) * (h + pad) + pad, n * (w + pad) + pad), 255, dtype=torch.uint8
    )
    for r, t in enumerate(tiles):
        for c in range(t.shape[0]):
            y0, x0 = pad + r * (h + pad), pad + c * (w + pad)
            grid[:, y0 : y0 + t.shape[2], x0 : x0 + t.shape[3]] = t[c]
    return grid.permute(1, 2, 0).numpy()


def save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".png.tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    tmp.replace(path)


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int, *, desc: str, unit: str, initial: int = 0) -> Any:
    """A tqdm bar (count, rate, ETA) on an interactive rank-0 terminal; elsewhere (other
    ranks, log files, CI) an object with the same ``update``/``close`` that prints nothing."""
    if not distributed.is_main() or not sys.stderr.isatty():
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, desc=desc)
