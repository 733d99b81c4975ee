"""What every evaluation pass shares: settings, meters, the val loader, visuals, results.

Distribution. Every rank evaluates its share of an unshuffled, undropped loader. The
sampler pads the last round with repeats of the first samples so that the ranks stay even;
before the pass the ranks exchange their index lists, and each index is *owned* by the
lowest rank that loads it. Only owned samples enter the histogram, the PNGs and the token
files; the per-image rows go through one ``FeatureAccumulator`` gather that drops repeated
indices. So 1 and N processes give the same numbers on the same images.

``ValPass`` is that machinery for one pass over the val split (always the ``none``
transform: Resize + CenterCrop); the tokenizer and generator passes add what they measure.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from vq.core import amp, distributed
from vq.core.data import LoaderConfig, build_loader, per_rank_batch_size
from vq.core.errors import UserError
from vq.core.logging import LOGGER, progress, save_png
from vq.core.tensorfiles import load_weights
from vq.train.data import DatasetConfig, build_dataset, collate
from vq.train.metrics import (
    CodebookHistogram,
    FeatureAccumulator,
    InceptionFeatures,
    write_metrics_json,
)
from vq.train.metrics.fid import FID_CACHE_DIR
from vq.train.metrics.inception import INCEPTION_WEIGHTS
from vq.train.tokenizer_run import TokenizerRunConfig

PREPROCESSING = "none: Resize(S, bicubic, antialias) + CenterCrop(S), uint8"
INDEX = "index"  # the dataset index of every item and row


# --------------------------------------------------------------------------------------------
# Settings, results and the frozen networks that measure
# --------------------------------------------------------------------------------------------


@dataclass
class EvalSettings:
    """What an evaluation measures and writes (the options of ``val`` and ``test``)."""

    inception_weights: Path = INCEPTION_WEIGHTS
    require_fid: bool = False
    """Missing Inception weights are an error instead of a skipped metric."""
    fid_cache_dir: Path = FID_CACHE_DIR
    fid_statistics: Path | None = None
    """The statistics file to compare with (default: ``fid_cache_dir/<reference_name>.npz``);
    computed in the pass and written there when it does not exist yet."""
    lpips: Any = None
    """An ``LPIPSConfig`` to build LPIPS from (None: its default files)."""
    visual: str | None = None
    """Per-sample PNGs of the keys (``image``, ``reconstruction``) that fully match this."""
    tokenize: bool = False
    """Write the val split's tokens (a token file, ``vq.train.data.token_files``)."""
    autocast: bool = False
    compile: bool = False
    """``--compile``: ``torch.compile`` the evaluated tokenizer's forward passes, the AR
    one-token step or the NAR network."""
    batch_size: int | None = None
    """Images per process and batch (default: the run's loader)."""
    seed: int = 0
    """AR runs: seeds every generated image (with its dataset index) and sampled accuracy."""
    guidance: tuple[float, ...] | None = None
    """AR runs: guidance scales measured besides 1.0 (default: the config's scale)."""


@dataclass
class Evaluation:
    """Metrics of one evaluation (the same on every rank) and what they were measured on."""

    metrics: dict[str, float | str]
    image_count: int
    reference: str | None
    preprocessing: dict[str, Any]
    skipped: dict[str, str]

    def summary(self) -> str:
        """The metrics as one log line: ``name value`` pairs, floats to 4 digits."""
        return " ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.metrics.items()
        )

    def write(self, path: Path, checkpoint: str, iteration: int | None) -> None:
        """``metrics.json`` of the weights ``checkpoint`` (``metrics.write_metrics_json``)."""
        write_metrics_json(
            path,
            self.metrics,
            checkpoint=checkpoint,
            iteration=iteration,
            reference=self.reference,
            image_count=self.image_count,
            preprocessing=self.preprocessing,
        )


@dataclass
class Meters:
    """The frozen networks of an evaluation, built once and reused for every checkpoint."""

    inception: InceptionFeatures | None = None
    lpips: nn.Module | None = None
    teacher: nn.Module | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    """Metric -> why it is not measured (logged once, recorded in metrics.json)."""

    def log_skipped(self) -> None:
        for metric, why in self.skipped.items():
            LOGGER.info("skipping %s: %s", metric, why)


def has_pixels(tokenizer: nn.Module) -> bool:
    """Whether ``tokenizer`` decodes codes to images (feature tokenizers alone do not)."""
    return callable(getattr(tokenizer, "decode", None))


def pixel_meters(
    tokenizer: nn.Module,
    settings: EvalSettings,
    device: torch.device,
    without_pixels: tuple[str, str],
) -> Meters:
    """Meters holding Inception for FID/IS when ``tokenizer`` has pixels. Skipped, with the
    reason: ``fid`` when the Inception weights are missing (an error with
    ``settings.require_fid``); ``without_pixels`` = (metric, consequence) when it has none."""
    meters = Meters()
    if not has_pixels(tokenizer):
        metric, consequence = without_pixels
        meters.skipped[metric] = f"{type(tokenizer).__name__} has no decode(): {consequence}"
        return meters
    try:
        meters.inception = InceptionFeatures(settings.inception_weights).to(device)
    except UserError as error:
        if settings.require_fid:
            raise
        meters.skipped["fid"] = str(error)
    return meters


def checkpoint_meta(path: Path) -> dict[str, Any] | None:
    """The ``meta.json`` of a checkpoint directory; None for a weights file."""
    meta = path / "meta.json"
    return json.loads(meta.read_text()) if path.is_dir() and meta.is_file() else None


def config_weights(config: Any) -> list[Path]:
    """Weights a tokenizer run's config names for its frozen parts (loaded first)."""
    return config.frozen_weights if isinstance(config, TokenizerRunConfig) else []


def frozen_prefixes(files: list[Path]) -> list[str]:
    """Sub-modules the checkpoints among ``files`` leave out on purpose (frozen parts)."""
    prefixes: list[str] = []
    for f in files:
        meta = checkpoint_meta(f)
        if meta is not None:
            prefixes += meta.get("modules", {}).get("model", [])
    return prefixes


def load_evaluated_weights(
    module: nn.Module, files: Sequence[Path], frozen_prefixes: Sequence[str] = ()
) -> str:
    """Load the merged ``files`` (later win) into ``module``; returns the load summary.

    Every weight must come from a file, except under ``frozen_prefixes`` (parts a checkpoint
    leaves out on purpose and that their module loads from its own pretrained file):
    evaluating half-random weights would give plausible-looking, meaningless numbers.
    """
    report = load_weights(module, files)
    uncovered = [
        k
        for k in report.missing
        if not any(k == p or k.startswith(p + ".") for p in frozen_prefixes)
    ]
    if not report.loaded or uncovered or report.mismatched:
        shown = " ".join(str(f) for f in files)
        raise UserError(
            f"the weights in {shown} do not fit the {type(module).__name__}: {report.summary()}"
        )
    return report.summary()


def val_preprocessing(data: DatasetConfig) -> dict[str, Any]:
    """How the val images of an evaluation were prepared (``metrics.json``)."""
    return {
        "split": "val",
        "dataset": data.kind,
        "image_size": data.image_size,
        "transform": PREPROCESSING,
    }


def mean_metrics(gathered: Mapping[str, Tensor], names: Sequence[str]) -> dict[str, float | str]:
    """The mean over images of every gathered (N, 1) row among ``names``, in that order."""
    return {name: float(gathered[name].double().mean()) for name in names if name in gathered}


# --------------------------------------------------------------------------------------------
# Data: index-carrying items, owned samples
# --------------------------------------------------------------------------------------------


class IndexedDataset(Dataset):
    """Items of ``dataset`` with their dataset index under ``"index"`` (for de-duplication)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        return None if item is None else {**item, INDEX: index}


def eval_loader(
    dataset: Dataset, loader: LoaderConfig, device: torch.device, batch_size: int | None
) -> tuple[Any, set[int]]:
    """An unshuffled loader over this rank's share and the dataset indices this rank owns.

    Owned: the lowest rank whose share contains the index (the sampler's padding repeats
    samples on other ranks). The index lists are exchanged once, before the pass.
    """
    if batch_size is not None:
        loader = loader.model_copy(update={"batch_size": batch_size, "batch_size_is_global": False})
    else:
        per_rank_batch_size(loader, distributed.world_size())  # a clear error if it does not divide
    loader = loader.model_copy(update={"persistent_workers": False})
    data, sampler = build_loader(
        IndexedDataset(dataset), loader, seed=0, device=device, collate_fn=collate, train=False
    )
    shares = distributed.all_gather_objects(sampler.indices(0))
    owned = set(shares[distributed.rank()])
    for earlier in shares[: distributed.rank()]:
        owned.difference_update(earlier)
    return data, owned


def owned_mask(indices: Tensor, owned: set[int]) -> Tensor:
    """(B,) bool: samples this rank owns and sees for the first time (removed from ``owned``)."""
    keep = []
    for i in indices.tolist():
        keep.append(i in owned)
        owned.discard(i)
    return torch.tensor(keep, dtype=torch.bool)


def save_visuals(
    pictures: Mapping[str, Tensor],
    kept: Sequence[int],
    ids: Sequence[str],
    visual: re.Pattern[str] | None,
    out_dir: Path | None,
) -> None:
    """PNGs ``out_dir/visuals/<key>/<id>.png`` of the ``kept`` samples of every uint8
    (B, 3, H, W) picture whose key fully matches ``visual``."""
    if visual is None or out_dir is None:
        return
    for key, images in pictures.items():
        if visual.fullmatch(key):
            for i in kept:
                picture = images[i].permute(1, 2, 0).cpu().numpy()  # (H, W, 3)
                save_png(picture, out_dir / "visuals" / key / f"{ids[i].replace('/', '-')}.png")


# --------------------------------------------------------------------------------------------
# One pass over the val split
# --------------------------------------------------------------------------------------------


class ValPass:
    """One pass over the val split of ``data`` on this rank: its batches with their owned
    samples, the per-image rows, the code histogram and the PNG visuals. Building it is a
    collective (the ranks exchange their shares)."""

    def __init__(
        self,
        data: DatasetConfig,
        loader: LoaderConfig,
        settings: EvalSettings,
        device: torch.device,
        num_codes: int,
    ) -> None:
        self.data, self.settings, self.device = data, settings, device
        dataset = build_dataset(data, "val")
        self.count = len(dataset)
        self.loader, self.owned = eval_loader(dataset, loader, device, settings.batch_size)
        self.visual = re.compile(settings.visual) if settings.visual else None
        self.histogram = CodebookHistogram(num_codes, device=device)
        self.rows = FeatureAccumulator(num_samples=self.count)

    def batches(self, desc: str) -> Iterator[tuple[dict[str, Any], Tensor]]:
        """This rank's non-empty batches and their (B,) owned masks, behind a progress bar."""
        bar = progress(len(self.loader), desc=desc, unit="batch")
        for batch in self.loader:
            bar.update(1)
            if len(batch["id"]):
                yield batch, owned_mask(batch[INDEX], self.owned)
        bar.close()

    def encode(self, tokenizer: nn.Module, image: Tensor, keep: Tensor) -> Tensor:
        """The codes (B, h, w) of ``image`` (B, 3, H, W) in [-1, 1]; the owned ones (``keep``,
        (B,) bool) enter the histogram."""
        with amp.autocast(self.device, self.settings.autocast):
            ids = tokenizer.encode(image)  # (B, h, w)
        self.histogram.update(ids[keep.to(ids.device)])
        return ids

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The forward-pass autocast of this pass (``--autocast``)."""
        return amp.autocast(self.device, self.settings.autocast)

    def add_rows(self, row: dict[str, Tensor], index: Tensor) -> None:
        """Per-image values (B, ...) of the images at dataset ``index`` (B,); every pass adds
        ``index`` itself too (its gathered length is the image count)."""
        row[INDEX] = index.double()
        self.rows.update({k: v.reshape(v.shape[0], -1) for k, v in row.items()}, index=index)

    def save_visuals(
        self,
        pictures: Mapping[str, Tensor],
        kept: Sequence[int],
        ids: Sequence[str],
        out_dir: Path | None,
    ) -> None:
        """PNGs of the ``kept`` samples of the pictures that ``--visual`` names."""
        save_visuals(pictures, kept, ids, self.visual, out_dir)

    def wants_visual(self, key: str) -> bool:
        return self.visual is not None and self.visual.fullmatch(key) is not None

    def gather(self) -> dict[str, Tensor]:
        """name -> (N, D) of every rank's rows, in dataset order, without repeats."""
        return self.rows.gather()

    def evaluation(
        self,
        gathered: Mapping[str, Tensor],
        metrics: dict[str, float | str],
        reference: str | None,
        skipped: Mapping[str, str],
        preprocessing: Mapping[str, Any] | None = None,
    ) -> Evaluation:
        """The ``Evaluation`` of the pass; ``preprocessing`` extends ``val_preprocessing``."""
        return Evaluation(
            metrics=metrics,
            image_count=gathered[INDEX].shape[0],
            reference=reference,
            preprocessing={**val_preprocessing(self.data), **(preprocessing or {})},
            skipped=dict(skipped),
        )
