"""The two rules by which the reference carves a val split out of a single list of images.

Both are deterministic functions of the list length, so train and val never overlap and
every process computes the same split.

* ``tail_split`` (LAION-Aesthetics): the last ``num_val`` samples, in reverse order, are val.
* ``stride_split`` (SA-Med2D-20M, SATIN): with ``chunk = n // num_val``, val is every
  ``chunk``-th sample ``0, chunk, 2 chunk, ...`` (``num_val`` of them), train is the rest in
  order. It spreads val over the whole list, which is sorted by source in these datasets.
"""

from __future__ import annotations

import numpy as np

from vq.core.errors import UserError
from vq.train.data.base import Split


def tail_split(n: int, num_val: int, split: Split) -> np.ndarray:
    """Indices of ``split`` when the last ``num_val`` of ``n`` samples (reversed) are val."""
    if not 0 < num_val < n:
        raise UserError(f"cannot hold out {num_val} val samples from {n}: need 0 < num_val < n")
    if split == "val":
        return np.arange(n - 1, n - 1 - num_val, -1)
    return np.arange(n - num_val)


def stride_split(n: int, num_val: int, split: Split) -> np.ndarray:
    """Indices of ``split`` when every ``n // num_val``-th sample (from 0) is val."""
    if num_val <= 0 or n // num_val < 2:
        raise UserError(
            f"cannot hold out every (n // num_val)-th sample with n={n}, num_val={num_val}: "
            "need n >= 2 * num_val > 0"
        )
    chunk = n // num_val
    val = np.arange(num_val) * chunk
    if split == "val":
        return val
    return np.setdiff1d(np.arange(n), val, assume_unique=True)
