"""Evaluation of a class-to-image proposal network over the val split: what ``val`` and
``test`` measure for AR and NAR runs.

One pass over the val images (the ``none`` transform, as for tokenizers) encodes each image
with the run's frozen tokenizer and collects per image:

* what the network predicts of its tokens given its true class (no label dropout), which
  depends on the kind of network (``proposal_kinds``). AR: ``loss``, the teacher-forced
  cross-entropy over the image-token logits as in training; ``top1_accuracy``, argmax
  predictions equal to its tokens; ``accuracy``, the reference's metric, each prediction
  drawn by the configured sampler (temperature, top-k, top-p). NAR: ``loss`` and
  ``masked_accuracy`` at the masked cells of a training-style mask;
* one image generated from its class without guidance, ``generated``, and one per guidance
  scale s != 1 (the config's ``sampling.guidance_scale``, or ``--guidance``),
  ``generated_cfg<s>``; their Inception features give ``gfid``/``isc_mean``/``isc_std``
  and ``gfid_cfg<s>``/``isc_mean_cfg<s>``/``isc_std_cfg<s>``;
* the codes of the val tokens: ``codebook_usage``, ``codebook_entropy``,
  ``codebook_perplexity`` of the tokenizer the network models.

gFID compares the N generated images (one per val image: 50 per class on ImageNet, as the
reference) with the statistics of the val split, the same file as the tokenizers' rFID
(``vq.train.evaluation.reference``); without a cache the pass computes and writes it.

Randomness: every val image owns a generator seeded from ``(seed, dataset index)`` for its
samples, and another from ``(seed, dataset index, 1)`` for its predictions (the AR sampled
accuracy, the NAR mask). The numbers
therefore depend on the seed alone, not on the batch size or the number of processes; and
one image's samples at different guidance scales share their random numbers, so they can
be compared side by side (``generated.png``: val images, then a row per scale).

Generation is the cost: per batch and scale, ``h*w`` forward steps of an AR network (with
the KV cache) or ``num_steps`` of a NAR one; loss and accuracy take one forward. Without Inception weights and without
``--visual``, nothing is generated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vq.core import distributed
from vq.core.errors import UserError
from vq.core.logging import image_grid, save_png
from vq.core.seeding import seeded_generator
from vq.train.data import DatasetConfig, TokenFileConfig, to_float, to_uint8
from vq.train.evaluation.common import (
    INDEX,
    EvalSettings,
    Evaluation,
    ValPass,
    has_pixels,
    mean_metrics,
    pixel_meters,
)
from vq.train.evaluation.proposal_kinds import ProposalKind, proposal_kind
from vq.train.evaluation.reference import (
    PassReference,
    fidelity_of_pass,
    inception_rows,
    load_reference,
)
from vq.train.metrics import codebook_metrics
from vq.train.metrics.inception import FEATURES
from vq.train.proposal import ProposalRunConfig, TokenSpace, token_space
from vq.train.tokenizer_source import load_frozen_tokenizer

OVERVIEW_COLUMNS = 8
"""Val images shown in ``generated.png`` (the first ones of rank 0)."""
_PREDICTION_STREAM = 1  # the third seed key of the prediction generators


def scale_suffix(scale: float) -> str:
    """Metric and picture suffix of a guidance scale: '' for 1.0, '_cfg1.75' otherwise."""
    return "" if scale == 1.0 else f"_cfg{scale:g}"


def guidance_scales(config: ProposalRunConfig, requested: tuple[float, ...] | None) -> list[float]:
    """1.0 first, then the requested scales (default: the config's), without repeats."""
    wanted = requested if requested is not None else (config.sampling.guidance_scale,)
    bad = [s for s in wanted if s <= 0.0]
    if bad:
        raise UserError(f"--guidance {bad}: guidance scales must be positive (1: off)")
    scales = [1.0, *sorted({s for s in wanted if s != 1.0})]
    if len(scales) > 1 and not config.can_guide:
        raise UserError(
            f"--guidance {' '.join(f'{s:g}' for s in scales[1:])}: this network was trained "
            "without a null class (no label dropout); guidance needs a *_cfg model"
        )
    return scales


def val_images(config: ProposalRunConfig) -> DatasetConfig:
    """The image dataset whose val split the network is evaluated on."""
    data = config.val_data or config.data
    if isinstance(data, TokenFileConfig):
        raise UserError(
            f"this {proposal_kind(config).label} run trains on the token file {data.path}: evaluating it needs the val "
            "images, set val_data (e.g. --override '.val_data:dict(kind=\"imagenet\", ...)')"
        )
    return data


class GeneratorEvaluator:
    """The network of an AR or NAR run (its checkpoints' weights are loaded into ``module``),
    its frozen tokenizer and the meters, built once for every checkpoint."""

    def __init__(
        self, config: ProposalRunConfig, settings: EvalSettings, device: torch.device
    ) -> None:
        self.kind: ProposalKind = proposal_kind(config, settings.compile)
        if settings.tokenize:
            raise UserError(
                "--tokenize writes a tokenizer's codes: run val/test on the tokenizer run "
                f"(the {self.kind.label} run's ir_config) instead"
            )
        if config.tokenizer is None:
            raise UserError(
                f"evaluating an {self.kind.label} run needs its tokenizer "
                "(ir_config and ir_state_dict)"
            )
        self.config, self.settings, self.device = config, settings, device
        self.data = val_images(config)
        self.scales = guidance_scales(config, settings.guidance)
        tokenizer = load_frozen_tokenizer(config.tokenizer.config, config.tokenizer.state_dicts)
        self.tokenizer = tokenizer.to(device).eval()
        self.space: TokenSpace = token_space(config, self.tokenizer)
        grid = tuple(self.tokenizer.grid_size(self.data.image_size))
        if grid != self.space.grid:
            raise UserError(
                f"val images of {self.data.image_size} px make {grid} token grids, the "
                f"network models {self.space.grid} grids"
            )
        self.module: nn.Module = self.kind.build(config, self.space, device)
        self.can_decode = has_pixels(self.tokenizer)
        nothing = (
            f"nothing to generate (give the {self.kind.label} run a pixel-decoder run as ir_config)"
        )
        self.meters = pixel_meters(self.tokenizer, settings, device, ("gfid", nothing))
        self.meters.log_skipped()

    def __call__(self, out_dir: Path | None) -> Evaluation:
        self.module.eval()
        return evaluate_generator(self, out_dir)


@torch.no_grad()
def evaluate_generator(evaluator: GeneratorEvaluator, out_dir: Path | None) -> Evaluation:
    """Measure the network of ``evaluator`` on the val split; a collective (every rank
    calls it). PNGs and the overview grid go to ``out_dir`` (shared by the ranks)."""
    settings, device, inception = evaluator.settings, evaluator.device, evaluator.meters.inception
    val = ValPass(
        evaluator.data, evaluator.config.loader, settings, device, evaluator.space.codebook_size
    )
    generating = evaluator.can_decode and (
        inception is not None
        or any(val.wants_visual("generated" + scale_suffix(s)) for s in evaluator.scales)
    )
    reference = None if inception is None else load_reference(evaluator.data, settings, val.count)
    overview: dict[str, list[Tensor]] = {}
    for batch, keep in val.batches("val" + (" + generate" if generating else "")):
        ids = val.encode(evaluator.tokenizer, batch["image"].to(device), keep)  # (B, h, w)
        row = prediction_rows(evaluator, val, batch, ids)
        pictures = {"image": batch["original_image"].to(device)}  # (B, 3, H, W) uint8
        if generating:
            add_generated(evaluator, val, batch, row, pictures, reference)
        if val.wants_visual("reconstruction") and evaluator.can_decode:
            with val.autocast():
                pictures["reconstruction"] = to_uint8(evaluator.tokenizer.decode(ids))
        val.add_rows(row, batch[INDEX])
        kept = keep.nonzero().flatten().tolist()
        val.save_visuals(pictures, kept, batch["id"], out_dir)
        _collect_overview(overview, pictures, kept)

    gathered = val.gather()  # name -> (N, D), dataset order, without repeats
    results = mean_metrics(gathered, evaluator.kind.prediction_metrics)
    results.update(codebook_metrics(val.histogram))
    measured_fid = FEATURES in gathered
    if measured_fid:
        assert reference is not None
        results.update(generated_fidelity(evaluator, gathered, reference))
    _save_overview(overview, out_dir)
    generated = gathered[INDEX].shape[0] if generating else 0
    return val.evaluation(
        gathered,
        results,
        reference.name if measured_fid and reference is not None else None,
        evaluator.meters.skipped,
        {"generation": generation_record(evaluator, generated)},
    )


def prediction_rows(
    evaluator: GeneratorEvaluator, val: ValPass, batch: dict[str, Any], ids: Tensor
) -> dict[str, Tensor]:
    """Per image (B,): what the network predicts of its codes ``ids`` (B, h, w) given the
    true classes (``ProposalKind.predictions``), each image with its own generator."""
    generators = [
        seeded_generator(val.device, val.settings.seed, i, _PREDICTION_STREAM)
        for i in batch[INDEX].tolist()
    ]
    classes = batch["category"].to(val.device)  # (B,)
    with val.autocast():
        return evaluator.kind.predictions(
            evaluator.module, evaluator.config, evaluator.space, classes, ids, generators
        )


def add_generated(
    evaluator: GeneratorEvaluator,
    val: ValPass,
    batch: dict[str, Any],
    row: dict[str, Tensor],
    pictures: dict[str, Tensor],
    reference: PassReference | None,
) -> None:
    """One image per val image of ``batch`` and guidance scale, into ``pictures`` as
    ``generated<suffix>``; with Inception (and so a ``reference``) their features and logits
    go into ``row``, with what the reference needs of the originals, ``pictures["image"]``."""
    inception = evaluator.meters.inception
    classes = batch["category"].to(val.device)  # (B,)
    for scale in evaluator.scales:
        pixels = generated_images(evaluator, val, classes, batch[INDEX], scale)
        suffix = scale_suffix(scale)
        pictures["generated" + suffix] = pixels
        if inception is not None:
            row.update(inception_rows(inception, pixels, suffix))
    if inception is not None and reference is not None:
        row.update(reference.original_rows(inception, pictures["image"]))


def generated_images(
    evaluator: GeneratorEvaluator, val: ValPass, classes: Tensor, index: Tensor, scale: float
) -> Tensor:
    """uint8 (B, 3, H, W) images of ``classes`` (B,) at guidance ``scale``, each drawn with
    the generator of its dataset ``index`` (B,) and the seed."""
    generators = [seeded_generator(val.device, val.settings.seed, i) for i in index.tolist()]
    with val.autocast():
        sampling = evaluator.config.sampling.model_copy(update={"guidance_scale": scale})
        tokens = evaluator.kind.draw(
            evaluator.module, evaluator.config, evaluator.space, classes, sampling, generators
        )  # (B, h, w)
        return to_uint8(evaluator.tokenizer.decode(tokens))  # (B, 3, H, W) uint8


def generated_fidelity(
    evaluator: GeneratorEvaluator, gathered: dict[str, Tensor], reference: PassReference
) -> dict[str, float | str]:
    """``gfid<suffix>``, ``isc_mean<suffix>``, ``isc_std<suffix>`` of every guidance scale."""
    suffixes = [scale_suffix(s) for s in evaluator.scales]
    results: dict[str, float | str] = {}
    for suffix, measured in fidelity_of_pass(gathered, reference, evaluator.data, suffixes).items():
        results.update({_generated_name(k) + suffix: v for k, v in measured.items()})
    return results


def generation_record(evaluator: GeneratorEvaluator, images_per_scale: int) -> dict[str, Any]:
    """How the generated images were drawn (``metrics.json``); nothing generated: 0 images
    and no scales."""
    return {
        "images_per_scale": images_per_scale,
        "guidance_scales": evaluator.scales if images_per_scale else [],
        "seed": evaluator.settings.seed,
        **evaluator.kind.sampling_record(evaluator.config),
        "conditioning": "the class of each val image",
    }


def _generated_name(metric: str) -> str:
    """FID of generated images is gFID (``fid`` of reconstructions is rFID)."""
    return "gfid" if metric == "fid" else metric


def _save_overview(overview: dict[str, list[Tensor]], out_dir: Path | None) -> None:
    """``out_dir/generated.png``: the overview's val images, then a row per scale (rank 0)."""
    if out_dir is not None and distributed.is_main() and len(overview) > 1:
        grid = image_grid({k: to_float(torch.cat(v)) for k, v in overview.items()})
        save_png(grid, out_dir / "generated.png")


def _collect_overview(
    overview: dict[str, list[Tensor]], pictures: dict[str, Tensor], kept: list[int]
) -> None:
    """Keep the first ``OVERVIEW_COLUMNS`` owned samples of every picture key, on the CPU."""
    have = sum(t.shape[0] for t in overview.get("image", []))
    take = kept[: max(OVERVIEW_COLUMNS - have, 0)]
    if not take:
        return
    for key, images in pictures.items():
        if key != "reconstruction":
            overview.setdefault(key, []).append(images[take].cpu())


__all__ = [
    "GeneratorEvaluator",
    "evaluate_generator",
    "guidance_scales",
    "scale_suffix",
    "val_images",
]
