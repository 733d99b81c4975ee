"""Trainer of VQ-KD: a ViT tokenizer whose codes learn to predict a frozen teacher's features.

One step: the teacher (CLIP, DINO, ...) turns the uint8 ``original_image`` into patch
features under ``no_grad``; the tokenizer encodes the [-1, 1] ``image``, quantizes and
decodes to a prediction of those features on its own token grid; the loss is the mean over
tokens of ``1 - cos(prediction, target)`` plus the quantizer's commitment loss. The
codebook follows an EMA of the encoder's features (k-means initialised on the first
batch) and is in no optimizer; encoder and decoder train with AdamW, weight decay on
weight matrices only, and a linear warm-up followed by a cosine decay.

The teacher is built here, not in the model: it is not saved in checkpoints, needs its own
pretrained file, and is not needed to tokenize. ``VQKDRunConfig.build_tokenizer()`` gives
the tokenizer without it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from torch import Tensor

from vq.core.data import LoaderConfig
from vq.core.errors import UserError
from vq.core.loop import LoopConfig, Run
from vq.core.optim import OptimizationConfig, OptimizerConfig, ScheduleConfig
from vq.core.parallel import StrategyConfig, unwrap
from vq.tokenizers.models.vqkd import VQKDConfig, VQKDTokenizer
from vq.tokenizers.optim_groups import param_groups
from vq.tokenizers.teachers import TeacherConfig, TeacherName, build_teacher
from vq.train.data import DatasetConfig, build_dataset, collate
from vq.train.distillation import cosine_distillation_loss, distillation_targets
from vq.train.tokenizer_run import TokenizerRunConfig

# Width of each teacher's default features (``TeacherConfig(name=...)``), which the decoder
# predicts: CLIP-style towers are projected into their image-text space, the others are the
# final patch tokens. A teacher config that changes the features (``with_projection``) needs
# ``model.decoder.out_dim`` changed to match; the trainer checks it.
TEACHER_DIMS: dict[str, int] = {
    "clip": 512,
    "dino": 768,
    "mae": 768,
    "vit": 768,
    "convnext": 1024,
    "openclip_L_14": 768,
    "openclip_H_14": 1024,
    "openclip_bigG_14": 1280,
    "evaclip": 768,
    "efficientnet_lite0": 112,
}


def vqkd_optimization(
    lr: float = 2e-4,
    weight_decay: float = 1e-4,
    warmup_iters: int = 25_000,
    min_lr: float = 1e-5,
) -> OptimizationConfig:
    """AdamW (0.9, 0.99), linear warm-up from ``1e-8 * lr``, cosine to ``min_lr`` at the end
    of the run (the reference: 25k + 225k iterations)."""
    return OptimizationConfig(
        optimizer=OptimizerConfig(
            kind="adamw", lr=lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=weight_decay
        ),
        schedule=ScheduleConfig(
            kind="cosine", warmup_iters=warmup_iters, warmup_start_factor=1e-8, min_lr=min_lr
        ),
    )


class VQKDRunConfig(TokenizerRunConfig):
    trainer: Literal["vqkd"] = "vqkd"
    model: VQKDConfig = Field(default_factory=lambda: VQKDConfig.preset(TEACHER_DIMS["clip"]))
    teacher: TeacherConfig = Field(default_factory=lambda: TeacherConfig(name="clip"))
    optimization: OptimizationConfig = Field(default_factory=vqkd_optimization)
    distillation_weight: float = Field(1.0, ge=0.0)
    """Weight of the cosine distillation loss (the commitment weight is the quantizer's)."""

    def build_tokenizer(self) -> VQKDTokenizer:
        """The tokenizer (encoder, codebook, feature decoder), without the teacher."""
        return VQKDTokenizer(self.model)


def vqkd_recipe(
    teacher: TeacherName,
    num_codes: int = 8192,
    *,
    data: DatasetConfig,
    iters: int = 250_000,
    batch_size: int = 512,
    workers: int = 10,
    strategy: StrategyConfig | None = None,
) -> VQKDRunConfig:
    """The reference VQ-KD run distilling ``teacher`` into a ``num_codes x 32`` codebook:
    batch 512 (global), 250k iterations, AdamW 2e-4 with 25k warm-up iterations."""
    return VQKDRunConfig(
        loop=LoopConfig(
            iters=iters, log_interval=50, visual_interval=500, checkpoint_interval=10_000
        ),
        loader=LoaderConfig(batch_size=batch_size, batch_size_is_global=True, workers=workers),
        strategy=strategy or StrategyConfig(),
        model=VQKDConfig.preset(TEACHER_DIMS[teacher], num_codes=num_codes),
        teacher=TeacherConfig(name=teacher),
        data=data,
    )


class VQKDTrainer:
    def __init__(self, config: VQKDRunConfig, run: Run) -> None:
        self.run = run
        self.config = config
        self.dataset = build_dataset(config.data, "train")
        self.collate = collate
        self.teacher = build_teacher(config.teacher).to(run.device)
        if self.teacher.dim != config.model.feature_dim:
            raise UserError(
                f"vqkd: teacher {config.teacher.name!r} gives {self.teacher.dim}-d features but "
                f"the decoder predicts {config.model.feature_dim}; set "
                f".model.decoder.out_dim to {self.teacher.dim}"
            )
        self.model = run.prepare("model", VQKDTokenizer(config.model))
        self.tokenizer: VQKDTokenizer = unwrap(self.model)  # type: ignore[assignment]
        # The EMA codebook is a buffer: it is in no parameter group.
        groups = param_groups(self.model, config.optimization.optimizer.weight_decay)
        self.opt = run.optimization("model", self.model, groups, config.optimization)

    def targets(self, original_image: Tensor, grid: tuple[int, int]) -> Tensor:
        """Teacher features ``(B, D, h, w)`` (fp32) that the decoder learns to predict."""
        with self.run.autocast():
            return distillation_targets(self.teacher, original_image, grid)

    def step(self, batch: dict[str, Any], iteration: int) -> dict[str, Tensor | float]:
        image = batch["image"]  # (B, 3, H, W) in [-1, 1]
        grid = self.tokenizer.grid_size((image.shape[-2], image.shape[-1]))
        target = self.targets(batch["original_image"], grid)  # (B, D, h, w)
        with self.opt.accumulate():
            with self.run.autocast():
                out = self.model(image)
            distillation = cosine_distillation_loss(out.prediction, target)
            loss = self.config.distillation_weight * distillation + out.quantizer.loss()
            self.opt.backward(loss)
        quantizer_losses = {f"{name}_loss": value for name, value in out.quantizer.losses.items()}
        return {
            "loss": loss,
            "cosine_r_loss": distillation,
            **quantizer_losses,
            **out.quantizer.statistics,
            **self.opt.step(iteration),
        }
