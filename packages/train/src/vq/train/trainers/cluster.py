"""Trainer of Cluster: a codebook fitted online to a frozen encoder's features.

The frozen teacher (CLIP ViT-B/16 without projection at 256 px in the reference) turns the
uint8 ``original_image`` into a 16x16 grid of 768-d features; the quantizer assigns each to
its nearest code (cosine) and the codebook loss MSE(e, sg(x)) moves the codes, while
CVQ-VAE re-initialises rarely used codes from the nearest features of the global batch.
Only the codebook is in the optimizer (Adam 5.4e-5, betas (0.5, 0.9), constant LR).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from torch import Tensor

from vq.core.data import LoaderConfig
from vq.core.loop import LoopConfig, Run
from vq.core.optim import OptimizationConfig, OptimizerConfig
from vq.core.parallel import StrategyConfig, unwrap
from vq.tokenizers.models.cluster import ClusterConfig, ClusterTokenizer
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.tokenizers.teachers import TeacherConfig, TeacherName
from vq.train.data import DatasetConfig, build_dataset, collate
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


def cluster_optimization(lr: float = 5.4e-5) -> OptimizationConfig:
    """Adam with the VQGAN family's betas (0.5, 0.9) and a constant LR."""
    return OptimizationConfig(optimizer=OptimizerConfig(kind="adam", lr=lr, betas=(0.5, 0.9)))


class ClusterRunConfig(TokenizerRunConfig):
    trainer: Literal["cluster"] = "cluster"
    model: ClusterConfig = Field(default_factory=ClusterConfig)
    optimization: OptimizationConfig = Field(default_factory=cluster_optimization)

    def build_tokenizer(self) -> ClusterTokenizer:
        """The frozen teacher (weights from ``model.teacher.weights``) and the codebook."""
        return ClusterTokenizer(self.model)


def cluster_recipe(
    teacher: TeacherName,
    num_codes: int = 8192,
    *,
    data: DatasetConfig,
    teacher_image_size: int = 256,
    iters: int = 100_000,
    batch_size: int = 256,
    workers: int = 10,
    strategy: StrategyConfig | None = None,
) -> ClusterRunConfig:
    """The reference Cluster run: ``teacher``'s unprojected patch tokens at 256 px (16x16
    tokens for patch 16), a ``num_codes`` cosine codebook with globally synced CVQ, 100k
    iterations of 256 images."""
    return ClusterRunConfig(
        loop=LoopConfig(
            iters=iters, log_interval=50, visual_interval=500, checkpoint_interval=10_000
        ),
        loader=LoaderConfig(batch_size=batch_size, batch_size_is_global=True, workers=workers),
        strategy=strategy or StrategyConfig(),
        model=ClusterConfig(
            teacher=TeacherConfig(
                name=teacher, with_projection=False, image_size=teacher_image_size
            ),
            quantizer=VectorQuantizerConfig.preset("cluster", num_codes, TEACHER_DIMS[teacher]),
        ),
        data=data,
    )


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
