"""Seeds and random-number-generator states.

The run seed (``--seed``, default 3407 as in the reference) is offset by the rank, so ranks
draw different dropout masks and noise but every run is reproducible. RNG states of Python,
NumPy and torch (CPU and CUDA) are captured per rank into checkpoints and restored on resume.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

SEED_MODULUS = 2**30


def rank_seed(seed: int, rank: int) -> int:
    """The seed of ``rank`` for a run seeded with ``seed``: distinct per rank, reproducible."""
    return (seed + 1_000_003 * rank) % SEED_MODULUS


def seeded_generator(device: torch.device | str, *keys: int) -> torch.Generator:
    """A generator on ``device`` seeded from ``keys``, e.g. ``(seed, sample index)``: distinct
    key tuples give independent streams (numpy's ``SeedSequence`` hashing), so a sample can
    own its random numbers whatever batch or process draws it."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]
    return torch.Generator(device).manual_seed(int(state) & (2**63 - 1))


def seed_everything(seed: int) -> None:
    seed %= SEED_MODULUS
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict[str, Any]:
    """All RNG states of this process, as tensors and plain values (``weights_only`` safe)."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(mt_state, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
