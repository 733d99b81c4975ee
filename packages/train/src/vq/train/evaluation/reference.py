"""FID reference statistics: the Inception statistics of a split that rFID and gFID compare
with, and FID/IS against them.

A pass over the val split compares with ``pretrained/fid/<kind>_<split>_<size>.npz``
(``reference_name``). When that file is missing, the pass also runs Inception on the
original images and writes it (``reference_from_pass``), so the first evaluation of a
dataset makes the cache the ``fid`` command would have made (``reference_statistics``: the
same transform, the same network, the same file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from vq.core import distributed
from vq.core.data import LoaderConfig
from vq.core.errors import UserError
from vq.core.logging import LOGGER
from vq.train.data import ConcatConfig, DatasetConfig, Split, build_dataset
from vq.train.evaluation.common import INDEX, PREPROCESSING, EvalSettings, eval_loader
from vq.train.metrics import (
    FeatureAccumulator,
    FIDStatistics,
    InceptionFeatures,
    compute_fidelity,
    fid_statistics_path,
)
from vq.train.metrics.inception import FEATURE_EXTRACTOR, FEATURES, LOGITS

REAL_FEATURES = "real_features"  # Inception features of the originals (no cache yet)


def reference_name(data: DatasetConfig, split: Split) -> str:
    """Name of the FID statistics of ``split`` of ``data``: ``<kind>_<split>_<size>``."""
    return f"{data.kind}_{split}_{data.image_size}"


def statistics_metadata(data: DatasetConfig, split: Split, name: str) -> dict[str, str | int]:
    """What a statistics file records about the images it describes."""
    return {
        "name": name,
        "dataset": data.model_dump_json(),
        "split": split,
        "image_size": data.image_size,
        "preprocessing": PREPROCESSING,
        "feature_extractor": FEATURE_EXTRACTOR,
    }


# --------------------------------------------------------------------------------------------
# The reference of a pass over the val split
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PassReference:
    """The FID reference of a val pass: its name, the cached statistics (None: not cached
    yet, the pass computes them) and the file they are read from or written to."""

    name: str
    stats: FIDStatistics | None
    path: Path

    def original_rows(self, inception: InceptionFeatures, original: Tensor) -> dict[str, Tensor]:
        """The rows a pass needs of the originals, uint8 (B, 3, H, W): their Inception
        features (B, 2048) when it computes the statistics (no cache yet), else none."""
        return {} if self.stats is not None else {REAL_FEATURES: inception(original)[FEATURES]}


def inception_rows(
    inception: InceptionFeatures, images: Tensor, suffix: str = ""
) -> dict[str, Tensor]:
    """``features<suffix>`` (B, 2048) and ``logits<suffix>`` (B, C) of uint8 ``images``
    (B, 3, H, W): the rows ``fidelity_of_pass`` compares with the reference."""
    measured = inception(images)
    return {FEATURES + suffix: measured[FEATURES], LOGITS + suffix: measured[LOGITS]}


def load_reference(data: DatasetConfig, settings: EvalSettings, count: int) -> PassReference:
    """The reference of the val split of ``data`` (``count`` images): the cached statistics
    when they exist (they must describe ``count`` images), else where to write them."""
    name = reference_name(data, "val")
    path = settings.fid_statistics or fid_statistics_path(name, settings.fid_cache_dir)
    if not path.is_file():
        LOGGER.info("no FID statistics at %s yet: computing them in this pass", path)
        return PassReference(name, None, path)
    stats = FIDStatistics.load(
        path,
        expect={"feature_extractor": FEATURE_EXTRACTOR, "preprocessing": PREPROCESSING},
    )
    cached = stats.metadata.get("image_count")
    if cached != count:
        raise UserError(
            f"FID statistics {path} describe {cached} images but the val split has {count}; "
            "recompute them with the `fid` command (or pass --fid-statistics)"
        )
    return PassReference(str(stats.metadata.get("name", name)), stats, path)


def reference_from_pass(
    real_features: Tensor | None, reference: PassReference, data: DatasetConfig
) -> FIDStatistics | None:
    """The reference statistics on rank 0 (None on the others): the cached ones, or those of
    the originals' features (N, 2048) gathered in this pass, then written to
    ``reference.path`` for the next evaluation."""
    if not distributed.is_main():
        return None
    if reference.stats is not None:
        return reference.stats
    assert real_features is not None
    stats = FIDStatistics.from_features(
        real_features, **statistics_metadata(data, "val", reference.name)
    )
    stats.save(reference.path)
    LOGGER.info("cached FID statistics of %s at %s", reference.name, reference.path)
    return stats


def fidelity(
    features: Tensor, logits: Tensor, stats: FIDStatistics | None, reference: str
) -> dict[str, float | str]:
    """FID and IS of gathered features (N, 2048) and logits (N, classes) against ``stats``, on
    rank 0 (one slow 2048-d matrix root), shared with the other ranks."""
    results: dict[str, float | str] | None = None
    if distributed.is_main():
        assert stats is not None
        n = features.shape[0]
        measured = compute_fidelity(
            {FEATURES: features, LOGITS: logits},
            stats,
            reference_name=reference,
            isc_splits=min(10, n),
        )
        results = {k: v for k, v in measured.items() if k != "reference"}
    return distributed.broadcast_object(results)


def fidelity_of_pass(
    gathered: Mapping[str, Tensor],
    reference: PassReference,
    data: DatasetConfig,
    suffixes: Sequence[str] = ("",),
) -> dict[str, dict[str, float | str]]:
    """suffix -> FID and IS of the gathered ``features<suffix>``/``logits<suffix>`` rows
    against the reference (written first when this pass computed it)."""
    stats = reference_from_pass(gathered.get(REAL_FEATURES), reference, data)
    return {
        suffix: fidelity(
            gathered[FEATURES + suffix], gathered[LOGITS + suffix], stats, reference.name
        )
        for suffix in suffixes
    }


# --------------------------------------------------------------------------------------------
# Reference statistics of any split (the `fid` command)
# --------------------------------------------------------------------------------------------


def without_augmentation(data: DatasetConfig) -> DatasetConfig:
    """``data`` with the ``none`` transform on every split (concatenations recursively)."""
    if isinstance(data, ConcatConfig):
        return data.model_copy(
            update={"datasets": [without_augmentation(d) for d in data.datasets]}
        )
    return data.model_copy(update={"augmentation": "none"})


@torch.no_grad()
def reference_statistics(
    data: DatasetConfig,
    split: Split,
    inception: InceptionFeatures,
    loader: LoaderConfig,
    device: torch.device,
) -> FIDStatistics:
    """Inception statistics of ``split`` of ``data`` through the ``none`` transform (the
    train split too: FID references never see random augmentation). A collective."""
    dataset = build_dataset(without_augmentation(data), split)
    iterator, _ = eval_loader(dataset, loader, device, None)
    rows = FeatureAccumulator(num_samples=len(dataset))
    for batch in iterator:
        if len(batch["id"]):
            features = inception(batch["original_image"].to(device))[FEATURES]  # (B, 2048)
            rows.update({FEATURES: features}, index=batch[INDEX])
    features = rows.gather()[FEATURES]  # (N, 2048)
    return FIDStatistics.from_features(
        features, **statistics_metadata(data, split, reference_name(data, split))
    )


__all__ = [
    "PassReference",
    "fidelity",
    "fidelity_of_pass",
    "inception_rows",
    "load_reference",
    "reference_from_pass",
    "reference_name",
    "reference_statistics",
    "statistics_metadata",
    "without_augmentation",
]
