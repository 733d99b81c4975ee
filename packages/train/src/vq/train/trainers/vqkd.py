"""Trainer of VQ-KD: a ViT tokenizer whose codes learn to predict a frozen teacher's features.

One step: the teacher (CLIP, DINO, ...) turns the uint8 ``original_image`` into patch
features under ``no_grad``; the tokenizer encodes the [-1, 1] ``image``, quantizes and
decodes to a prediction of those features on its own token grid; the loss is the mean over
tokens of ``1 - cos(prediction, target)`` plus the quantizer's commitment loss. The
codebook follows an EMA of the encoder's features (k-means initialised on the first
batch) and is in no optimizer; encoder and decoder train with weight decay on weight
matrices only. The reference's optimiser, schedule and run sizes: configs/vqkd/_recipe.py.

The teacher is built here, not in the model: it is not saved in checkpoints, needs its own
pretrained file, and is not needed to tokenize. ``VQKDRunConfig.build_tokenizer()`` gives
the tokenizer without it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from torch import Tensor

from vq.core.errors import UserError
from vq.core.loop import Run
from vq.core.optim import OptimizationConfig
from vq.core.parallel import unwrap
from vq.tokenizers.models.vqkd import VQKDConfig, VQKDTokenizer
from vq.tokenizers.optim_groups import param_groups
from vq.tokenizers.teachers import TeacherConfig, build_teacher
from vq.train.data import build_dataset, collate
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


class VQKDRunConfig(TokenizerRunConfig):
    trainer: Literal["vqkd"] = "vqkd"
    model: VQKDConfig = Field(default_factory=lambda: VQKDConfig.preset(TEACHER_DIMS["clip"]))
    teacher: TeacherConfig = Field(default_factory=lambda: TeacherConfig(name="clip"))
    optimization: OptimizationConfig
    """Encoder and decoder (the EMA codebook is in no optimizer); the reference's in
    configs/vqkd/_recipe.py."""
    distillation_weight: float = Field(1.0, ge=0.0)
    """Weight of the cosine distillation loss (the commitment weight is the quantizer's)."""

    def build_tokenizer(self) -> VQKDTokenizer:
        """The tokenizer (encoder, codebook, feature decoder), without the teacher."""
        return VQKDTokenizer(self.model)


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
