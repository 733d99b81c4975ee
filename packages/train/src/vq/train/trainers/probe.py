"""Trainer of classification probes: how much a frozen tokenizer's codes understand.

One step::

    image (B, 3, H, W) --frozen tokenizer--> features, one of
        quantized   the code vectors of its tokens        (B, D, h, w)  codebook lookup
        codes       the token ids alone                    (B, h, w)     the probe embeds them
        pre_quant   what its quantizer receives            (B, D, h, w)  before rounding
    features --probe (vq.train.probe_heads)--> logits (B, C)
    loss = cross-entropy with the image's class

``quantized`` is the protocol of the reference's unfinished classification task (the mean
code vector, batch norm, linear); ``codes`` asks what the discrete ids carry whatever the
geometry of the codebook (each id gets a vector the probe learns: with the linear head, a
linear classifier of the token histogram); ``pre_quant`` measures the encoder before the
quantizer, so the gap to ``quantized`` is what quantization costs. For every tokenizer the
quantizer's input has the quantizer's width D: the VQGAN family's connector output, VQ-KD's
encoder output (before its l2 normalisation), Cluster's teacher features.

The tokenizer is loaded as the AR stage loads it (``FrozenTokenizerConfig``: a finished
run's resolved config plus weights) and held outside ``run.prepare``: never trained, never
checkpointed. Only the probe is. ``val``/``test`` measure loss and top-1/top-5 accuracy on
the val split (``vq.train.evaluation.probe_pass``). The recipe is configs/probe/_recipe.py.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.utils.data import Dataset

from vq.core.errors import UserError
from vq.core.loop import Run, RunConfig
from vq.core.optim import OptimizationConfig
from vq.decoders import DecodedTokenizer
from vq.tokenizers.models.cluster import ClusterTokenizer
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizer
from vq.tokenizers.models.vqkd import VQKDTokenizer
from vq.train.data import DatasetConfig, build_dataset, collate, to_uint8
from vq.train.probe_heads import HeadConfig, Probe
from vq.train.proposal import FrozenTokenizerConfig
from vq.train.tokenizer_source import load_frozen_tokenizer

FeatureSource = Literal["quantized", "codes", "pre_quant"]
TOP_K = 5  # the second accuracy reported besides top-1


class ProbeRunConfig(RunConfig):
    """A probe on the ``features`` of a frozen tokenizer run, trained on ``data``'s labels."""

    trainer: Literal["probe"] = "probe"
    tokenizer: FrozenTokenizerConfig
    """The finished tokenizer (or pixel-decoder) run whose features are probed."""
    data: DatasetConfig
    """Labelled images; ``val``/``test`` use the val split of the same dataset."""
    num_classes: int = Field(1000, ge=2)
    features: FeatureSource = "quantized"
    head: HeadConfig = HeadConfig()
    optimization: OptimizationConfig

    @model_validator(mode="after")
    def _labelled(self) -> ProbeRunConfig:
        if self.data.kind == "folder":
            raise ValueError(
                "data: a 'folder' dataset is unlabelled (every image class 0); a probe needs "
                "labels: imagenet, image_folder (ROOT/<split>/<class>/...) or photos"
            )
        return self


class FrozenFeatures:
    """The frozen tokenizer and the features it gives a probe (no gradient, no state)."""

    def __init__(self, tokenizer: nn.Module, source: FeatureSource) -> None:
        self.tokenizer, self.source = tokenizer, source
        # A pixel decoder's run probes the feature tokenizer under its decoder.
        inner = tokenizer.tokenizer if isinstance(tokenizer, DecodedTokenizer) else tokenizer
        self.inner = inner
        if source == "pre_quant" and not isinstance(
            inner, PixelTokenizer | VQKDTokenizer | ClusterTokenizer
        ):
            raise UserError(
                f"features 'pre_quant': a {type(inner).__name__} has no known quantizer input; "
                "probe 'quantized' or 'codes' instead"
            )

    @property
    def dim(self) -> int:
        """Channels D of ``quantized`` and ``pre_quant``; the embedding width of ``codes``."""
        return self.inner.quantizer.dim

    @property
    def num_codes(self) -> int | None:
        """Codebook size when the probe reads ids (``codes``), else None."""
        return self.tokenizer.num_codes if self.source == "codes" else None

    @torch.no_grad()
    def __call__(self, image: Tensor) -> Tensor:
        """image (B, 3, H, W) in [-1, 1] -> ids (B, h, w) or features (B, D, h, w) fp32."""
        if self.source == "pre_quant":
            return self.quantizer_input(image).float()
        ids = self.tokenizer.encode(image)  # (B, h, w)
        if self.source == "codes":
            return ids
        return self.inner.quantizer.codes(ids).float()  # (B, D, h, w)

    def quantizer_input(self, image: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, D, h, w)
        inner = self.inner
        if isinstance(inner, PixelTokenizer):
            inner.grid_size((image.shape[-2], image.shape[-1]))  # a clear error if it does not fit
            return inner.post_encode(inner.encoder(image))
        if isinstance(inner, VQKDTokenizer):
            return inner.encoder(image)
        return inner.features(to_uint8(image))  # Cluster: the teacher's features


def frozen_features(config: ProbeRunConfig, device: torch.device) -> FrozenFeatures:
    """The run's frozen tokenizer on ``device`` and its ``config.features``."""
    tokenizer = load_frozen_tokenizer(config.tokenizer.config, config.tokenizer.state_dicts)
    return FrozenFeatures(tokenizer.to(device), config.features)


def build_probe(config: ProbeRunConfig, features: FrozenFeatures) -> Probe:
    """The untrained probe of the run for the tokenizer's features."""
    return Probe(config.head, features.dim, config.num_classes, features.num_codes)


def classification_rows(logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Per sample (B,): cross-entropy ``loss`` (fp32), ``top1_accuracy`` and
    ``top5_accuracy`` (1 when the label is among the 5 highest logits) of logits (B, C)."""
    logits = logits.float()
    top = logits.topk(min(TOP_K, logits.shape[-1]), dim=-1).indices  # (B, k)
    hits = top == labels[:, None]  # (B, k)
    return {
        "loss": F.cross_entropy(logits, labels, reduction="none"),
        "top1_accuracy": hits[:, 0].float(),
        f"top{TOP_K}_accuracy": hits.any(-1).float(),
    }


def labelled_training_data(config: ProbeRunConfig) -> Dataset:
    """The train split; refuses unlabelled data and more classes than ``num_classes``."""
    dataset = build_dataset(config.data, "train")
    classes = getattr(dataset, "classes", None)
    if classes is not None and len(classes) < 2:
        raise UserError(
            f"the {config.data.kind} data has no labels (one class): a probe needs a "
            "labelled dataset such as imagenet or an image folder with class subfolders"
        )
    if classes is not None and len(classes) > config.num_classes:
        raise UserError(
            f"the training data has {len(classes)} classes but num_classes is {config.num_classes}"
        )
    return dataset


class ProbeTrainer:
    def __init__(self, config: ProbeRunConfig, run: Run) -> None:
        self.run = run
        self.dataset = labelled_training_data(config)
        self.collate = collate
        # Frozen, held here and not by run.prepare: never wrapped, optimised or checkpointed.
        self.features = frozen_features(config, run.device)
        self.model = run.prepare("model", build_probe(config, self.features))
        self.opt = run.optimization(
            "model", self.model, self.model.parameters(), config.optimization
        )

    def step(self, batch: dict[str, Any], iteration: int) -> dict[str, Tensor | float]:
        with self.run.autocast():
            features = self.features(batch["image"])  # (B, h, w) ids or (B, D, h, w)
        labels = batch["category"]  # (B,)
        with self.opt.accumulate():
            with self.run.autocast():
                logits = self.model(features)  # (B, C)
            rows = classification_rows(logits, labels)  # fp32
            loss = rows["loss"].mean()
            self.opt.backward(loss)
        accuracy = {k: v.detach().mean() for k, v in rows.items() if k != "loss"}
        return {"loss": loss, **accuracy, **self.opt.step(iteration)}
