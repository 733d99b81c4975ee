"""Evaluation of a tokenizer over a whole split, on one process or many: the loop behind
``val`` and ``test``, plus FID reference statistics and token files.

One pass over the val split (always the ``none`` transform: Resize + CenterCrop) encodes
every image, decodes it when the tokenizer has pixels, and collects per image:

* ``l1_image_loss``, ``mse_image_loss``, ``psnr``, ``ssim`` on the uint8-decoded images
  (what a user saves as PNG; ``vq.train.metrics.image``), ``lpips`` when its weights exist;
* Inception features and logits of the reconstructions for ``fid`` (rFID against cached
  statistics of the same split) and ``isc_mean``/``isc_std``;
* ``cosine_r_loss`` (1 - cos to the teacher's features) for VQ-KD runs whose teacher
  weights are on disk;
* the code histogram: ``codebook_usage``, ``codebook_entropy`` (nats; the reference's
  "ppl") and ``codebook_perplexity`` = exp(entropy).

Distribution. Every rank evaluates its share of an unshuffled, undropped loader. The
sampler pads the last round with repeats of the first samples so that the ranks stay even;
before the pass the ranks exchange their index lists, and each index is *owned* by the
lowest rank that loads it. Only owned samples enter the histogram, the PNGs and the token
files; the per-image rows go through one ``FeatureAccumulator`` gather that drops repeated
indices. So 1 and N processes give the same numbers on the same images.

Reference statistics. rFID compares with ``pretrained/fid/<kind>_<split>_<size>.npz``
(``reference_name``). When that file is missing, the pass also runs Inception on the
original images and writes it, so the first evaluation of a dataset makes the cache the
``fid`` command would have made (same transform, same network, same file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, Dataset
from torchvision.transforms import v2

from vq.core import amp, distributed
from vq.core.data import LoaderConfig, build_loader, per_rank_batch_size
from vq.core.errors import UserError
from vq.core.logging import LOGGER, progress, save_png
from vq.core.tensorfiles import load_weights
from vq.train.data import (
    ConcatConfig,
    DatasetConfig,
    Split,
    build_dataset,
    collate,
    to_float,
    to_uint8,
)
from vq.train.data.token_files import merge_tokens
from vq.train.distillation import cosine_distance, distillation_targets
from vq.train.metrics import (
    CodebookHistogram,
    FeatureAccumulator,
    FIDStatistics,
    InceptionFeatures,
    codebook_metrics,
    compute_fidelity,
    fid_statistics_path,
    reconstruction_metrics,
)
from vq.train.metrics.fid import (
    FEATURE_EXTRACTOR,
    FEATURES,
    FID_CACHE_DIR,
    INCEPTION_WEIGHTS,
    LOGITS,
)

PREPROCESSING = "none: Resize(S, bicubic, antialias) + CenterCrop(S), uint8"
TEN_CROP_PREPROCESSING = "ten-crop: Resize(1.1 S) + CenterCrop(1.1 S) + TenCrop(S), uint8"
TOKENS_FILE = "tokens_{split}.safetensors"
TEN_CROP_TOKENS_FILE = "tokens_train_tencrop.safetensors"
REAL_FEATURES = "real_features"  # Inception features of the originals (no cache yet)
INDEX = "index"  # the dataset index of every item and row


# --------------------------------------------------------------------------------------------
# Settings and the frozen networks that measure
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
    """Write the val split's tokens (the AR trainer's token-file format)."""
    autocast: bool = False
    batch_size: int | None = None
    """Images per process and batch (default: the run's loader)."""
    seed: int = 0
    """AR runs: seeds every generated image (with its dataset index) and sampled accuracy."""
    guidance: tuple[float, ...] | None = None
    """AR runs: guidance scales measured besides 1.0 (default: the config's scale)."""


@dataclass
class Meters:
    """The frozen networks of an evaluation, built once and reused for every checkpoint."""

    inception: InceptionFeatures | None = None
    lpips: nn.Module | None = None
    teacher: nn.Module | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    """Metric -> why it is not measured (logged once, recorded in metrics.json)."""


def build_meters(
    config: Any, tokenizer: nn.Module, settings: EvalSettings, device: torch.device
) -> Meters:
    """Inception, LPIPS and the VQ-KD teacher; each one whose weights are missing is skipped
    with one log line (Inception too, unless ``settings.require_fid``)."""
    meters = Meters()
    has_pixels = callable(getattr(tokenizer, "decode", None))
    if has_pixels:
        add_inception(meters, settings, device)
        from vq.tokenizers.losses.lpips import LPIPS, LPIPSConfig

        try:
            meters.lpips = LPIPS(settings.lpips or LPIPSConfig()).to(device).eval()
        except UserError as error:
            meters.skipped["lpips"] = str(error)
    else:
        meters.skipped["pixels"] = f"{type(tokenizer).__name__} has no decode(): no image metrics"
    if hasattr(config, "teacher") and callable(getattr(tokenizer, "predict_features", None)):
        from vq.tokenizers.teachers import build_teacher

        try:
            meters.teacher = build_teacher(config.teacher).to(device).eval()
        except UserError as error:
            meters.skipped["cosine_r_loss"] = str(error)
    log_skipped(meters)
    return meters


def add_inception(meters: Meters, settings: EvalSettings, device: torch.device) -> None:
    """Inception for FID/IS, or a skip reason when its weights are missing (an error with
    ``settings.require_fid``)."""
    try:
        meters.inception = InceptionFeatures(settings.inception_weights).to(device)
    except UserError as error:
        if settings.require_fid:
            raise
        meters.skipped["fid"] = str(error)


def log_skipped(meters: Meters) -> None:
    for metric, why in meters.skipped.items():
        LOGGER.info("skipping %s: %s", metric, why)


# --------------------------------------------------------------------------------------------
# Tokenizer and weights
# --------------------------------------------------------------------------------------------


def build_tokenizer(config: Any, source: Path) -> nn.Module:
    """The eval-time tokenizer of a run config (``build_tokenizer()``), untrained."""
    build = getattr(config, "build_tokenizer", None)
    if not callable(build):
        raise UserError(
            f"{source} is a {getattr(config, 'trainer', type(config).__name__)!r} run without "
            "build_tokenizer(): val/test evaluate tokenizer runs (VQGAN, CVQ-VAE, FSQ, VQ-KD, "
            "Cluster, pixel decoders) and AR runs"
        )
    return build()


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


class TokenizerEvaluator:
    """The tokenizer of a run (its checkpoints' weights are loaded into ``module``) and the
    meters, built once for every checkpoint."""

    def __init__(
        self, config: Any, source: Path, settings: EvalSettings, device: torch.device
    ) -> None:
        self.config, self.settings, self.device = config, settings, device
        self.module = build_tokenizer(config, source).to(device).eval()
        self.meters = build_meters(config, self.module, settings, device)

    def __call__(self, out_dir: Path | None) -> Evaluation:
        self.module.eval()
        return evaluate_tokenizer(
            self.module, self.config, self.meters, self.settings, self.device, out_dir
        )


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


def reference_name(data: DatasetConfig, split: Split) -> str:
    """Name of the FID statistics of ``split`` of ``data``: ``<kind>_<split>_<size>``."""
    return f"{data.kind}_{split}_{image_size_of(data)}"


def val_preprocessing(data: DatasetConfig) -> dict[str, Any]:
    """How the val images of an evaluation were prepared (``metrics.json``)."""
    return {
        "split": "val",
        "dataset": data.kind,
        "image_size": image_size_of(data),
        "transform": PREPROCESSING,
    }


def image_size_of(data: DatasetConfig) -> int:
    sizes = data.image_sizes() if hasattr(data, "image_sizes") else {data.image_size}
    return next(iter(sizes))


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
# The evaluation pass
# --------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Metrics of one evaluation (the same on every rank) and what they were measured on."""

    metrics: dict[str, float | str]
    image_count: int
    reference: str | None
    preprocessing: dict[str, Any]
    skipped: dict[str, str]


def load_reference(
    data: DatasetConfig, settings: EvalSettings, count: int
) -> tuple[str, FIDStatistics | None, Path]:
    """The cached statistics of the val split (None when there is no cache yet)."""
    name = reference_name(data, "val")
    path = settings.fid_statistics or fid_statistics_path(name, settings.fid_cache_dir)
    if not path.is_file():
        return name, None, path
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
    return str(stats.metadata.get("name", name)), stats, path


@torch.no_grad()
def evaluate_tokenizer(
    tokenizer: nn.Module,
    config: Any,
    meters: Meters,
    settings: EvalSettings,
    device: torch.device,
    out_dir: Path | None,
) -> Evaluation:
    """Measure ``tokenizer`` (already on ``device``, in eval mode) on the val split of
    ``config.data``; a collective: every rank calls it. PNGs and token files go to
    ``out_dir`` (shared by the ranks)."""
    data: DatasetConfig = config.data
    dataset = build_dataset(data, "val")
    count = len(dataset)
    loader, owned = eval_loader(dataset, config.loader, device, settings.batch_size)
    has_pixels = callable(getattr(tokenizer, "decode", None))
    visual = re.compile(settings.visual) if settings.visual else None

    reference, stats, stats_path = None, None, None
    if meters.inception is not None:
        reference, stats, stats_path = load_reference(data, settings, count)
        if stats is None:
            LOGGER.info("no FID statistics at %s yet: computing them in this pass", stats_path)

    histogram = CodebookHistogram(tokenizer.num_codes, device=device)
    rows = FeatureAccumulator(num_samples=count)
    tokens: list[dict[str, Any]] = []
    bar = progress(len(loader), desc="val", unit="batch")
    for batch in loader:
        bar.update(1)
        if not len(batch["id"]):
            continue
        image = batch["image"].to(device)  # (B, 3, H, W) in [-1, 1]
        original = batch["original_image"].to(device)  # (B, 3, H, W) uint8
        index = batch[INDEX]  # (B,)
        keep = owned_mask(index, owned)  # (B,)
        with amp.autocast(device, settings.autocast):
            ids = tokenizer.encode(image)  # (B, h, w)
        histogram.update(ids[keep.to(ids.device)])
        row: dict[str, Tensor] = {}
        pictures = {"image": original}
        if has_pixels:
            with amp.autocast(device, settings.autocast):
                decoded = tokenizer.decode(ids)  # (B, 3, H, W)
            reconstruction = to_uint8(decoded)  # (B, 3, H, W) uint8
            pictures["reconstruction"] = reconstruction
            row.update(reconstruction_metrics(reconstruction, original))
            if meters.lpips is not None:
                with amp.autocast(device, settings.autocast):
                    row["lpips"] = meters.lpips(to_float(reconstruction), image).float()
            if meters.inception is not None:
                fake = meters.inception(reconstruction)
                row[FEATURES], row[LOGITS] = fake[FEATURES], fake[LOGITS]
                if stats is None:
                    row[REAL_FEATURES] = meters.inception(original)[FEATURES]
        if meters.teacher is not None:
            with amp.autocast(device, settings.autocast):
                target = distillation_targets(meters.teacher, original, tuple(ids.shape[-2:]))
                prediction = tokenizer.predict_features(ids)  # (B, D, h, w)
            row["cosine_r_loss"] = cosine_distance(prediction, target)
        row[INDEX] = index.double()  # a row every evaluation has: the image count
        rows.update({k: v.reshape(v.shape[0], -1) for k, v in row.items()}, index=index)

        kept = keep.nonzero().flatten().tolist()
        save_visuals(pictures, kept, batch["id"], visual, out_dir)
        if settings.tokenize and kept:
            tokens.append(
                {
                    INDEX: index[kept],
                    "tokens": ids[kept].cpu(),
                    "category": batch["category"][kept],
                    "ids": [batch["id"][i] for i in kept],
                }
            )

    bar.close()
    gathered = rows.gather()  # name -> (N, D), dataset order, without repeats
    results: dict[str, float | str] = {}
    for name in ("l1_image_loss", "mse_image_loss", "psnr", "ssim", "lpips", "cosine_r_loss"):
        if name in gathered:
            results[name] = float(gathered[name].double().mean())
    results.update(codebook_metrics(histogram))
    if FEATURES in gathered:
        assert reference is not None and stats_path is not None
        stats = reference_from_pass(gathered.get(REAL_FEATURES), stats, stats_path, reference, data)
        results.update(fidelity(gathered[FEATURES], gathered[LOGITS], stats, reference))
    if settings.tokenize and out_dir is not None:
        merge_tokens(out_dir / TOKENS_FILE.format(split="val"), tokens, tokenizer.num_codes)
    return Evaluation(
        metrics=results,
        image_count=gathered[INDEX].shape[0],
        reference=reference if FEATURES in gathered else None,
        preprocessing=val_preprocessing(data),
        skipped=dict(meters.skipped),
    )


def reference_from_pass(
    real_features: Tensor | None,
    stats: FIDStatistics | None,
    stats_path: Path,
    reference: str,
    data: DatasetConfig,
) -> FIDStatistics | None:
    """The reference statistics on rank 0 (None on the others): the cached ones, or those of
    the originals' features gathered in this pass, then written to ``stats_path`` for the
    next evaluation."""
    if not distributed.is_main():
        return None
    if stats is None:
        assert real_features is not None
        stats = FIDStatistics.from_features(
            real_features, **statistics_metadata(data, "val", reference)
        )
        stats.save(stats_path)
        LOGGER.info("cached FID statistics of %s at %s", reference, stats_path)
    return stats


def fidelity(
    features: Tensor, logits: Tensor, stats: FIDStatistics | None, reference: str
) -> dict[str, float | str]:
    """FID and IS of gathered rows against ``stats``, computed on rank 0 (one slow 2048-d
    matrix root) and shared with the other ranks."""
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


# --------------------------------------------------------------------------------------------
# Reference statistics (the `fid` command)
# --------------------------------------------------------------------------------------------


def statistics_metadata(data: DatasetConfig, split: Split, name: str) -> dict[str, str | int]:
    return {
        "name": name,
        "dataset": data.model_dump_json(),
        "split": split,
        "image_size": image_size_of(data),
        "preprocessing": PREPROCESSING,
        "feature_extractor": FEATURE_EXTRACTOR,
    }


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


# --------------------------------------------------------------------------------------------
# Ten-crop token files
# --------------------------------------------------------------------------------------------


class TenCropStrip(nn.Module):
    """LlamaGen's ten-crop view of an image, tiled vertically: PIL RGB -> uint8 (3, 10 S, S).

    Resize the short side to int(1.1 S) (torchvision's default bilinear, as LlamaGen), centre
    crop int(1.1 S), then the four corners and the centre of S, and the same five of the
    mirrored image. Tiling the crops keeps the dataset item contract (one (3, H, W) image),
    so every dataset tokenizes this way without knowing about crops.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        outer = int(1.1 * size)
        self.prepare = v2.Compose([v2.Resize(outer), v2.CenterCrop(outer)])
        self.crops = v2.TenCrop(size)
        self.to_tensor = v2.PILToTensor()

    def forward(self, image: Any) -> Tensor:
        crops = self.crops(self.prepare(image))  # 10 PIL images of S x S
        return torch.cat([self.to_tensor(c) for c in crops], dim=1)  # (3, 10 S, S)


def _replace_transform(dataset: Dataset, transform: Any) -> None:
    if isinstance(dataset, ConcatDataset):
        for part in dataset.datasets:
            _replace_transform(part, transform)
        return
    if not hasattr(dataset, "transform"):
        raise UserError(f"{type(dataset).__name__} has no transform to replace for ten-crop")
    dataset.transform = transform  # type: ignore[attr-defined]


@torch.no_grad()
def tokenize_ten_crop(
    tokenizer: nn.Module, config: Any, settings: EvalSettings, device: torch.device, path: Path
) -> None:
    """LlamaGen-style ten-crop codes of the train split into the token file ``path``."""
    data: DatasetConfig = config.data
    size = image_size_of(data)
    dataset = build_dataset(data, "train")
    _replace_transform(dataset, TenCropStrip(size))
    loader, owned = eval_loader(dataset, config.loader, device, settings.batch_size)
    parts: list[dict[str, Any]] = []
    for batch in loader:
        if not len(batch["id"]):
            continue
        keep = owned_mask(batch[INDEX], owned)
        kept = keep.nonzero().flatten()
        if not kept.numel():
            continue
        strips = batch["image"][kept].to(device)  # (B, 3, 10 S, S)
        b = strips.shape[0]
        crops = (
            strips.unflatten(2, (10, size)).permute(0, 2, 1, 3, 4).flatten(0, 1)
        )  # (10 B, 3, S, S)
        with amp.autocast(device, settings.autocast):
            ids = tokenizer.encode(crops)  # (10 B, h, w)
        parts.append(
            {
                INDEX: batch[INDEX][kept],
                "tokens": ids.unflatten(0, (b, 10)).cpu(),  # (B, 10, h, w)
                "category": batch["category"][kept],
                "ids": [batch["id"][i] for i in kept.tolist()],
            }
        )
    merge_tokens(path, parts, tokenizer.num_codes, crops=10)


__all__ = [
    "PREPROCESSING",
    "EvalSettings",
    "Evaluation",
    "IndexedDataset",
    "Meters",
    "TenCropStrip",
    "TokenizerEvaluator",
    "build_meters",
    "build_tokenizer",
    "evaluate_tokenizer",
    "load_evaluated_weights",
    "reference_name",
    "reference_statistics",
    "tokenize_ten_crop",
]
