"""Writing the metrics of one evaluation to a JSON file that says what was measured.

A number like "rFID 4.98" is only comparable with another when the checkpoint, the
reference set, the number of images and the preprocessing are known, so they travel in the
same file. The file is written to a temporary name and renamed, so a reader (a dashboard, a
later ``val`` pass) never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _plain(value: Any) -> Any:
    """A JSON value for a metric: tensors and numpy scalars become floats or ints.

    Non-finite numbers (the PSNR of identical images is +inf) become ``null``, since JSON has
    no literal for them and a strict reader would reject Python's ``Infinity``.
    """
    if isinstance(value, torch.Tensor | np.ndarray | np.generic):
        value = value.item() if getattr(value, "ndim", 0) == 0 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_metrics_json(
    path: str | os.PathLike[str],
    metrics: Mapping[str, Any],
    *,
    checkpoint: str,
    iteration: int | None,
    reference: str | None,
    image_count: int,
    preprocessing: str | Mapping[str, Any],
) -> Path:
    """Write ``metrics`` and their context to ``path`` atomically; returns the path.

    Layout: ``{"checkpoint", "iteration", "reference", "image_count", "preprocessing",
    "metrics": {name: value}}``.
    """
    path = Path(path)
    record = {
        "checkpoint": str(checkpoint),
        "iteration": iteration,
        "reference": reference,
        "image_count": int(image_count),
        "preprocessing": _plain(preprocessing),
        "metrics": _plain(dict(metrics)),
    }
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def read_metrics_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The record written by ``write_metrics_json``."""
    return json.loads(Path(path).read_text())
