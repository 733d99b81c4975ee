"""Evaluation of a class-to-image proposal network over the val split: what ``val`` and
``test`` measure for AR runs.

One pass over the val images (the ``none`` transform, as for tokenizers) encodes each image
with the run's frozen tokenizer and collects per image:

* ``loss``: teacher-forced cross-entropy of its tokens given its true class (no label
  dropout), over the image-token logits, as in training;
* ``top1_accuracy``: argmax predictions equal to its tokens; ``accuracy``: the reference's
  metric, each prediction drawn by the configured sampler (temperature, top-k, top-p);
* one image generated from its class without guidance, ``generated``, and one per guidance
  scale s != 1 (the config's ``sampling.guidance_scale``, or ``--guidance``),
  ``generated_cfg<s>``; their Inception features give ``gfid``/``isc_mean``/``isc_std``
  and ``gfid_cfg<s>``/``isc_mean_cfg<s>``/``isc_std_cfg<s>``;
* the codes of the val tokens: ``codebook_usage``, ``codebook_entropy``,
  ``codebook_perplexity`` of the tokenizer the network models.

gFID compares the N generated images (one per val image: 50 per class on ImageNet, as the
reference) with the statistics of the val split, the same file as the tokenizers' rFID
(``reference_name``); without a cache the pass computes and writes it.

Randomness: every val image owns a generator seeded from ``(seed, dataset index)`` for its
samples, and another from ``(seed, dataset index, 1)`` for its sampled accuracy. The numbers
therefore depend on the seed alone, not on the batch size or the number of processes; and
one image's samples at different guidance scales share their random numbers, so they can
be compared side by side (``generated.png``: val images, then a row per scale).

Generation is the cost: ``h*w`` forward steps of the network per batch and scale (with the
KV cache); loss and accuracy take one forward. Without Inception weights and without
``--visual``, nothing is generated.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor

from vq.core import amp, distributed
from vq.core.errors import UserError
from vq.core.logging import LOGGER, image_grid, progress, save_png
from vq.core.seeding import seeded_generator
from vq.generators import (
    ProposalNetwork,
    generate,
    next_token_loss,
    sampled_token_accuracy,
    token_accuracy,
)
from vq.train.data import DatasetConfig, build_dataset, to_float, to_uint8
from vq.train.evaluate import (
    INDEX,
    REAL_FEATURES,
    EvalSettings,
    Evaluation,
    Meters,
    add_inception,
    eval_loader,
    fidelity,
    image_size_of,
    load_reference,
    log_skipped,
    owned_mask,
    reference_from_pass,
    save_visuals,
    val_preprocessing,
)
from vq.train.metrics import CodebookHistogram, FeatureAccumulator, codebook_metrics
from vq.train.metrics.fid import FEATURES, LOGITS
from vq.train.tokenizer_source import load_frozen_tokenizer
from vq.train.trainers.ar import (
    ARRunConfig,
    TokenFileConfig,
    TokenSpace,
    build_network,
    token_space,
)

OVERVIEW_COLUMNS = 8
"""Val images shown in ``generated.png`` (the first ones of rank 0)."""
_ACCURACY_STREAM = 1  # the third seed key of the sampled-accuracy generators


def scale_suffix(scale: float) -> str:
    """Metric and picture suffix of a guidance scale: '' for 1.0, '_cfg1.75' otherwise."""
    return "" if scale == 1.0 else f"_cfg{scale:g}"


def guidance_scales(config: ARRunConfig, requested: tuple[float, ...] | None) -> list[float]:
    """1.0 first, then the requested scales (default: the config's), without repeats."""
    wanted = requested if requested is not None else (config.sampling.guidance_scale,)
    bad = [s for s in wanted if s <= 0.0]
    if bad:
        raise UserError(f"--guidance {bad}: guidance scales must be positive (1: off)")
    scales = [1.0, *sorted({s for s in wanted if s != 1.0})]
    if len(scales) > 1 and not config.network.null_class:
        raise UserError(
            f"--guidance {' '.join(f'{s:g}' for s in scales[1:])}: this network was trained "
            "without a null class; guidance needs a *_cfg model"
        )
    return scales


def val_images(config: ARRunConfig) -> DatasetConfig:
    """The image dataset whose val split the network is evaluated on."""
    data = config.val_data or config.data
    if isinstance(data, TokenFileConfig):
        raise UserError(
            f"this AR run trains on the token file {data.path}: evaluating it needs the val "
            "images, set val_data (e.g. --override '.val_data:dict(kind=\"imagenet\", ...)')"
        )
    return data


class GeneratorEvaluator:
    """The network of an AR run (its checkpoints' weights are loaded into ``module``), its
    frozen tokenizer and the meters, built once for every checkpoint."""

    def __init__(self, config: ARRunConfig, settings: EvalSettings, device: torch.device) -> None:
        if settings.tokenize:
            raise UserError(
                "--tokenize writes a tokenizer's codes: run val/test on the tokenizer run "
                "(the AR run's ir_config) instead"
            )
        if config.tokenizer is None:
            raise UserError(
                "evaluating an AR run needs its tokenizer (ir_config and ir_state_dict)"
            )
        self.config, self.settings, self.device = config, settings, device
        self.data = val_images(config)
        self.scales = guidance_scales(config, settings.guidance)
        tokenizer = load_frozen_tokenizer(config.tokenizer.config, config.tokenizer.state_dicts)
        self.tokenizer = tokenizer.to(device).eval()
        self.space: TokenSpace = token_space(config, self.tokenizer)
        grid = tuple(self.tokenizer.grid_size(image_size_of(self.data)))
        if grid != self.space.grid:
            raise UserError(
                f"val images of {image_size_of(self.data)} px make {grid} token grids, the "
                f"network models {self.space.grid} grids"
            )
        network = build_network(config, self.space, pretrained=False)
        self.module: ProposalNetwork = network.to(device).eval()
        self.meters = Meters()
        self.can_decode = callable(getattr(self.tokenizer, "decode", None))
        if self.can_decode:
            add_inception(self.meters, settings, device)
        else:
            self.meters.skipped["gfid"] = (
                f"{type(self.tokenizer).__name__} has no decode(): nothing to generate "
                "(give the AR run a pixel-decoder run as ir_config)"
            )
        log_skipped(self.meters)

    def __call__(self, out_dir: Path | None) -> Evaluation:
        self.module.eval()
        return evaluate_generator(self, out_dir)


@torch.no_grad()
def evaluate_generator(evaluator: GeneratorEvaluator, out_dir: Path | None) -> Evaluation:
    """Measure the network of ``evaluator`` on the val split; a collective (every rank
    calls it). PNGs and the overview grid go to ``out_dir`` (shared by the ranks)."""
    config, settings, device = evaluator.config, evaluator.settings, evaluator.device
    network, tokenizer, space = evaluator.module, evaluator.tokenizer, evaluator.space
    layout = config.network.layout(space.codebook_size, config.num_classes)
    sampling = config.sampling
    dataset = build_dataset(evaluator.data, "val")
    count = len(dataset)
    loader, owned = eval_loader(dataset, config.loader, device, settings.batch_size)
    visual = re.compile(settings.visual) if settings.visual else None
    inception = evaluator.meters.inception
    wanted = inception is not None or (
        visual is not None
        and any(visual.fullmatch("generated" + scale_suffix(s)) for s in evaluator.scales)
    )
    generating = evaluator.can_decode and wanted

    reference, stats, stats_path = None, None, None
    if inception is not None:
        reference, stats, stats_path = load_reference(evaluator.data, settings, count)
        if stats is None:
            LOGGER.info("no FID statistics at %s yet: computing them in this pass", stats_path)

    histogram = CodebookHistogram(space.codebook_size, device=device)
    rows = FeatureAccumulator(num_samples=count)
    overview: dict[str, list[Tensor]] = {}
    bar = progress(len(loader), desc="val" + (" + generate" if generating else ""), unit="batch")
    for batch in loader:
        bar.update(1)
        if not len(batch["id"]):
            continue
        image = batch["image"].to(device)  # (B, 3, H, W) in [-1, 1]
        original = batch["original_image"].to(device)  # (B, 3, H, W) uint8
        classes = batch["category"].to(device)  # (B,)
        index = batch[INDEX]  # (B,)
        keep = owned_mask(index, owned)  # (B,)
        with amp.autocast(device, settings.autocast):
            ids = tokenizer.encode(image)  # (B, h, w)
        histogram.update(ids[keep.to(ids.device)])

        sequence = layout.sequence(classes, ids)  # (B, 1 + h*w)
        with amp.autocast(device, settings.autocast):
            logits = network(sequence)  # (B, 1 + h*w, V)
        accuracy_generators = [
            seeded_generator(device, settings.seed, i, _ACCURACY_STREAM) for i in index.tolist()
        ]
        row: dict[str, Tensor] = {
            "loss": next_token_loss(logits, sequence, layout, per_sample=True),
            "top1_accuracy": token_accuracy(logits, sequence, layout, per_sample=True),
            "accuracy": sampled_token_accuracy(
                logits,
                sequence,
                layout,
                temperature=sampling.temperature,
                top_k=sampling.top_k,
                top_p=sampling.top_p,
                generator=accuracy_generators,
                per_sample=True,
            ),
        }
        del logits
        pictures = {"image": original}
        if generating:
            for scale in evaluator.scales:
                generators = [seeded_generator(device, settings.seed, i) for i in index.tolist()]
                with amp.autocast(device, settings.autocast):
                    tokens = generate(
                        network,
                        classes,
                        space.grid,
                        space.codebook_size,
                        config.num_classes,
                        guidance_scale=scale,
                        temperature=sampling.temperature,
                        top_k=sampling.top_k,
                        top_p=sampling.top_p,
                        generator=generators,
                    )  # (B, h, w)
                    pixels = to_uint8(tokenizer.decode(tokens))  # (B, 3, H, W) uint8
                suffix = scale_suffix(scale)
                pictures["generated" + suffix] = pixels
                if inception is not None:
                    fake = inception(pixels)
                    row[FEATURES + suffix], row[LOGITS + suffix] = fake[FEATURES], fake[LOGITS]
            if inception is not None and stats is None:
                row[REAL_FEATURES] = inception(original)[FEATURES]
        if visual is not None and visual.fullmatch("reconstruction") and evaluator.can_decode:
            with amp.autocast(device, settings.autocast):
                pictures["reconstruction"] = to_uint8(tokenizer.decode(ids))
        row[INDEX] = index.double()
        rows.update({k: v.reshape(v.shape[0], -1) for k, v in row.items()}, index=index)

        kept = keep.nonzero().flatten().tolist()
        save_visuals(pictures, kept, batch["id"], visual, out_dir)
        _collect_overview(overview, pictures, kept)

    bar.close()
    gathered = rows.gather()  # name -> (N, D), dataset order, without repeats
    results: dict[str, float | str] = {
        name: float(gathered[name].double().mean())
        for name in ("loss", "accuracy", "top1_accuracy")
    }
    results.update(codebook_metrics(histogram))
    if FEATURES in gathered:
        assert reference is not None and stats_path is not None
        stats = reference_from_pass(
            gathered.get(REAL_FEATURES), stats, stats_path, reference, evaluator.data
        )
        for scale in evaluator.scales:
            suffix = scale_suffix(scale)
            measured = fidelity(
                gathered[FEATURES + suffix], gathered[LOGITS + suffix], stats, reference
            )
            results.update({_generated_name(k) + suffix: v for k, v in measured.items()})
    if out_dir is not None and distributed.is_main() and len(overview) > 1:
        grid = image_grid({k: to_float(torch.cat(v)) for k, v in overview.items()})
        save_png(grid, out_dir / "generated.png")
    return Evaluation(
        metrics=results,
        image_count=gathered[INDEX].shape[0],
        reference=reference if FEATURES in gathered else None,
        preprocessing={
            **val_preprocessing(evaluator.data),
            "generation": {
                "images_per_scale": gathered[INDEX].shape[0] if generating else 0,
                "guidance_scales": evaluator.scales if generating else [],
                "seed": settings.seed,
                "temperature": sampling.temperature,
                "top_k": sampling.top_k,
                "top_p": sampling.top_p,
                "conditioning": "the class of each val image",
            },
        },
        skipped=dict(evaluator.meters.skipped),
    )


def _generated_name(metric: str) -> str:
    """FID of generated images is gFID (``fid`` of reconstructions is rFID)."""
    return "gfid" if metric == "fid" else metric


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
