"""Trainer of Cluster: a codebook fitted online to a frozen encoder's features.

The frozen teacher (CLIP ViT-B/16 without projection at 256 px in the reference) turns the
uint8 ``original_image`` into a 16x16 grid of 768-d features; the quantizer assigns each to
its nearest code (cosine) and the codebook loss MSE(e, sg(x)) moves the codes, while
CVQ-VAE re-initialises rarely used codes from the nearest features of the global batch.
Only the codebook is in the optimizer. The reference's optimiser and run sizes:
configs/cluster/_recipe.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from torch import Tensor

from vq.core.loop import Run
from vq.core.optim import OptimizationConfig
from vq.core.parallel import unwrap
from vq.tokenizers.models.cluster import ClusterConfig, ClusterTokenizer
from vq.train.data import build_dataset, collate
from vq.train.tokenizer_run import TokenizerRunConfig

# Width of each teacher's features without projection (Cluster quantizes the encoder's own
# patch tokens, not a joint image-text space): the codebook dimension.
TEACHER_DIMS: dict[str, int] = {
    "clip": 768,
    "dino": 768,
    "mae": 768,
    "vit": 768,
    "convnext": 1024,
    "openclip_L_14": 1024,
    "openclip_H_14": 1280,
    "openclip_bigG_14": 1664,
    "evaclip": 768,
    "efficientnet_lite0": 112,
}


class ClusterRunConfig(TokenizerRunConfig):
    trainer: Literal["cluster"] = "cluster"
    model: ClusterConfig = Field(default_factory=ClusterConfig)
    optimization: OptimizationConfig
    """The codebook's alone; the reference's in configs/cluster/_recipe.py."""

    def build_tokenizer(self) -> ClusterTokenizer:
        """The frozen teacher (weights from ``model.teacher.weights``) and the codebook."""
        return ClusterTokenizer(self.model)


class ClusterTrainer:
    def __init__(self, config: ClusterRunConfig, run: Run) -> None:
        self.run = run
        self.dataset = build_dataset(config.data, "train")
        self.collate = collate
        self.model = run.prepare("model", ClusterTokenizer(config.model))
        self.tokenizer: ClusterTokenizer = unwrap(self.model)  # type: ignore[assignment]
        self.opt = run.optimization(
            "model", self.model, self.tokenizer.quantizer.parameters(), config.optimization
        )

    def step(self, batch: dict[str, Any], iteration: int) -> dict[str, Tensor | float]:
        with self.opt.accumulate():
            with self.run.autocast():
                out = self.model(batch["original_image"])  # uint8 (B, 3, H, W)
            loss = out.loss()
            self.opt.backward(loss)
        return {
            "loss": loss,
            **{f"{name}_loss": value for name, value in out.losses.items()},
            **out.statistics,
            **self.opt.step(iteration),
        }
