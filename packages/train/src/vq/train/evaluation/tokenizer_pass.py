"""Evaluation of a tokenizer over the val split: what ``val`` and ``test`` measure for
tokenizer runs (VQGAN, CVQ-VAE, FSQ, VQ-KD, Cluster, pixel decoders).

One pass over the val split (the ``none`` transform: Resize + CenterCrop) encodes every
image, decodes it when the tokenizer has pixels, and collects per image:

* ``l1_image_loss``, ``mse_image_loss``, ``psnr``, ``ssim`` on the uint8-decoded images
  (what a user saves as PNG; ``vq.train.metrics.image``), ``lpips`` when its weights exist;
* Inception features and logits of the reconstructions for ``fid`` (rFID against cached
  statistics of the same split, ``vq.train.evaluation.reference``) and ``isc_mean``/
  ``isc_std``;
* ``cosine_r_loss`` (1 - cos to the teacher's features) for VQ-KD runs whose teacher
  weights are on disk;
* the code histogram: ``codebook_usage``, ``codebook_entropy`` (nats; the reference's
  "ppl") and ``codebook_perplexity`` = exp(entropy).

With ``--tokenize`` the codes of the val images also go to ``tokens_val.safetensors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from vq.core.compiling import compile_module
from vq.core.data import LoaderConfig
from vq.core.errors import UserError
from vq.train.data import DatasetConfig, to_float, to_uint8
from vq.train.data.token_files import merge_tokens, token_part
from vq.train.distillation import cosine_distance, distillation_targets
from vq.train.evaluation.common import (
    INDEX,
    EvalSettings,
    Evaluation,
    Meters,
    ValPass,
    has_pixels,
    mean_metrics,
    pixel_meters,
)
from vq.train.evaluation.reference import (
    PassReference,
    fidelity_of_pass,
    inception_rows,
    load_reference,
)
from vq.train.metrics import codebook_metrics, reconstruction_metrics
from vq.train.metrics.inception import FEATURES
from vq.train.tokenizer_run import TokenizerRunConfig, tokenizer_run

TOKENS_FILE = "tokens_{split}.safetensors"
# The per-image metrics of a tokenizer, in the order metrics.json lists them.
PER_IMAGE_METRICS = ("l1_image_loss", "mse_image_loss", "psnr", "ssim", "lpips", "cosine_r_loss")


class EvaluatedData(Protocol):
    """What the pass reads of a run config: its data (val split) and loader."""

    @property
    def data(self) -> DatasetConfig: ...

    @property
    def loader(self) -> LoaderConfig: ...


def build_meters(
    config: Any, tokenizer: nn.Module, settings: EvalSettings, device: torch.device
) -> Meters:
    """Inception, LPIPS and the VQ-KD teacher; each one whose weights are missing is skipped
    with one log line (Inception too, unless ``settings.require_fid``)."""
    meters = pixel_meters(tokenizer, settings, device, ("pixels", "no image metrics"))
    if has_pixels(tokenizer):
        from vq.tokenizers.losses.lpips import LPIPS, LPIPSConfig

        try:
            meters.lpips = LPIPS(settings.lpips or LPIPSConfig()).to(device).eval()
        except UserError as error:
            meters.skipped["lpips"] = str(error)
    if hasattr(config, "teacher") and callable(getattr(tokenizer, "predict_features", None)):
        from vq.tokenizers.teachers import build_teacher

        try:
            meters.teacher = build_teacher(config.teacher).to(device).eval()
        except UserError as error:
            meters.skipped["cosine_r_loss"] = str(error)
    meters.log_skipped()
    return meters


class TokenizerEvaluator:
    """The tokenizer of a run (its checkpoints' weights are loaded into ``module``) and the
    meters, built once for every checkpoint."""

    def __init__(
        self, config: Any, source: Path, settings: EvalSettings, device: torch.device
    ) -> None:
        self.config: TokenizerRunConfig = tokenizer_run(config, source, "val/test")
        self.settings, self.device = settings, device
        self.module = self.config.build_tokenizer().to(device).eval()
        if settings.compile:  # what the pass calls: encode, decode, predict_features
            used = ("encode", "decode", "predict_features")
            compile_module(self.module, tuple(m for m in used if hasattr(self.module, m)))
        self.meters = build_meters(self.config, self.module, settings, device)

    def __call__(self, out_dir: Path | None) -> Evaluation:
        self.module.eval()
        return evaluate_tokenizer(
            self.module, self.config, self.meters, self.settings, self.device, out_dir
        )


@torch.no_grad()
def evaluate_tokenizer(
    tokenizer: nn.Module,
    config: EvaluatedData,
    meters: Meters,
    settings: EvalSettings,
    device: torch.device,
    out_dir: Path | None,
) -> Evaluation:
    """Measure ``tokenizer`` (already on ``device``, in eval mode) on the val split of
    ``config.data``; a collective: every rank calls it. PNGs and token files go to
    ``out_dir`` (shared by the ranks)."""
    data = config.data
    val = ValPass(data, config.loader, settings, device, tokenizer.num_codes)
    reference = None if meters.inception is None else load_reference(data, settings, val.count)
    tokens: list[dict[str, Any]] = []
    for batch, keep in val.batches("val"):
        ids = val.encode(tokenizer, batch["image"].to(device), keep)  # (B, h, w)
        row, pictures = measure_batch(tokenizer, meters, val, batch, ids, reference)
        val.add_rows(row, batch[INDEX])
        kept = keep.nonzero().flatten().tolist()
        val.save_visuals(pictures, kept, batch["id"], out_dir)
        if settings.tokenize and kept:
            ids_kept = [batch["id"][i] for i in kept]
            tokens.append(
                token_part(batch[INDEX][kept], ids[kept], batch["category"][kept], ids_kept)
            )

    gathered = val.gather()  # name -> (N, D), dataset order, without repeats
    results = mean_metrics(gathered, PER_IMAGE_METRICS)
    results.update(codebook_metrics(val.histogram))
    measured_fid = FEATURES in gathered
    if measured_fid:
        assert reference is not None
        results.update(fidelity_of_pass(gathered, reference, data)[""])
    if settings.tokenize and out_dir is not None:
        merge_tokens(out_dir / TOKENS_FILE.format(split="val"), tokens, tokenizer.num_codes)
    name = reference.name if measured_fid and reference is not None else None
    return val.evaluation(gathered, results, name, meters.skipped)


def measure_batch(
    tokenizer: nn.Module,
    meters: Meters,
    val: ValPass,
    batch: dict[str, Any],
    ids: Tensor,
    reference: PassReference | None,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The per-image rows (B, ...) of one batch and its pictures (uint8 (B, 3, H, W) by key:
    ``image``, and ``reconstruction`` when the tokenizer decodes) from its codes ``ids``
    (B, h, w); ``reference``: the pass's FID reference (None: no FID measured)."""
    image = batch["image"].to(val.device)  # (B, 3, H, W) in [-1, 1]
    original = batch["original_image"].to(val.device)  # (B, 3, H, W) uint8
    row: dict[str, Tensor] = {}
    pictures = {"image": original}
    if has_pixels(tokenizer):
        with val.autocast():
            decoded = tokenizer.decode(ids)  # (B, 3, H, W)
        reconstruction = to_uint8(decoded)  # (B, 3, H, W) uint8
        pictures["reconstruction"] = reconstruction
        row.update(reconstruction_metrics(reconstruction, original))
        if meters.lpips is not None:
            with val.autocast():
                row["lpips"] = meters.lpips(to_float(reconstruction), image).float()
        if meters.inception is not None and reference is not None:
            row.update(inception_rows(meters.inception, reconstruction))
            row.update(reference.original_rows(meters.inception, original))
    if meters.teacher is not None:
        with val.autocast():
            target = distillation_targets(meters.teacher, original, tuple(ids.shape[-2:]))
            prediction = tokenizer.predict_features(ids)  # (B, D, h, w)
        row["cosine_r_loss"] = cosine_distance(prediction, target)
    return row, pictures


__all__ = [
    "TOKENS_FILE",
    "EvaluatedData",
    "TokenizerEvaluator",
    "build_meters",
    "evaluate_tokenizer",
]
