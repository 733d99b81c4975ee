"""Evaluation of a classification probe over the val split: what ``val`` and ``test``
measure for probe runs (``vq.train.trainers.probe``).

One pass over the val images (the ``none`` transform: Resize + CenterCrop, as every pass)
computes the frozen tokenizer's features of each image, the probe's logits, and per image:

* ``loss``: cross-entropy with its class;
* ``top1_accuracy``: the highest logit is its class;
* ``top5_accuracy``: its class is among the five highest logits (all classes when there
  are fewer than five).

The metrics are means over the val images, each counted once whatever the number of
processes (``ValPass``). The probe's batch norm uses the running statistics of training.
``--visual image`` saves the val images; there is nothing else to picture.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vq.core.errors import UserError
from vq.train.evaluation.common import INDEX, EvalSettings, Evaluation, ValPass, mean_metrics
from vq.train.probe_heads import Probe
from vq.train.trainers.probe import (
    TOP_K,
    ProbeRunConfig,
    build_probe,
    classification_rows,
    frozen_features,
)

METRICS = ("loss", "top1_accuracy", f"top{TOP_K}_accuracy")


class ProbeEvaluator:
    """The probe of a run (its checkpoints' weights are loaded into ``module``) and the
    frozen tokenizer whose features it reads, built once for every checkpoint."""

    def __init__(
        self, config: ProbeRunConfig, settings: EvalSettings, device: torch.device
    ) -> None:
        if settings.tokenize:
            raise UserError(
                "--tokenize writes a tokenizer's codes: run val/test on the tokenizer run "
                "(the probe's it_config) instead"
            )
        self.config, self.settings, self.device = config, settings, device
        self.features = frozen_features(config, device)
        self.module: Probe = build_probe(config, self.features).to(device).eval()

    def __call__(self, out_dir: Path | None) -> Evaluation:
        self.module.eval()
        return evaluate_probe(self, out_dir)


@torch.no_grad()
def evaluate_probe(evaluator: ProbeEvaluator, out_dir: Path | None) -> Evaluation:
    """Measure the probe of ``evaluator`` on the val split; a collective (every rank calls
    it). ``--visual image`` PNGs go to ``out_dir``."""
    config, device = evaluator.config, evaluator.device
    val = ValPass(
        config.data,
        config.loader,
        evaluator.settings,
        device,
        evaluator.features.tokenizer.num_codes,
    )
    for batch, keep in val.batches("val"):
        labels = batch["category"].to(device)  # (B,)
        with val.autocast():
            features = evaluator.features(batch["image"].to(device))
            logits = evaluator.module(features)  # (B, C)
        val.add_rows(classification_rows(logits, labels), batch[INDEX])
        kept = keep.nonzero().flatten().tolist()
        val.save_visuals({"image": batch["original_image"]}, kept, batch["id"], out_dir)

    gathered = val.gather()  # name -> (N, 1), dataset order, without repeats
    results = mean_metrics(gathered, METRICS)
    record = {
        "features": config.features,
        "head": config.head.kind,
        "num_classes": config.num_classes,
    }
    return val.evaluation(gathered, results, None, {}, {"probe": record})


__all__ = ["METRICS", "ProbeEvaluator", "evaluate_probe"]
