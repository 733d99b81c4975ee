"""Small trainers for testing the loop, strategies and resuming (importable as
``toy_trainers:ToyTrainer`` with this directory on ``sys.path``).

They exercise what exact resuming has to get right: per-sample random augmentation,
dropout (the torch RNG of every rank), LR schedules, Adam state, weight EMA, and, in
``TwoModelTrainer``, two models with two optimizers stepped in one iteration.
"""

from __future__ import annotations

import time
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vq.core.amp import fp32
from vq.core.config import Config
from vq.core.data import LoaderConfig
from vq.core.ema import EMAConfig
from vq.core.loop import LoopConfig, Run, RunConfig
from vq.core.optim import OptimizationConfig, OptimizerConfig, ScheduleConfig
from vq.core.parallel import StrategyConfig


class ToyDataset(Dataset):
    """``n`` fixed points of a noisy linear map, augmented with fresh noise per access."""

    def __init__(self, n: int = 37, dim: int = 6) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x @ torch.randn(dim, 3, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i] + 0.05 * torch.randn(self.x.shape[1]), "y": self.y[i]}


class ToyOptions(Config):
    sleep: float = 0.0
    """Seconds to sleep per step, so a test can kill the run at a chosen iteration."""
    hidden: int = 32
    dropout: float = 0.1
    samples: int = 37


class ToyRunConfig(RunConfig):
    trainer: str = "toy_trainers:ToyTrainer"
    toy: ToyOptions = ToyOptions()
    optimization: OptimizationConfig = OptimizationConfig(
        optimizer=OptimizerConfig(kind="adamw", lr=3e-2, weight_decay=0.01),
        schedule=ScheduleConfig(kind="cosine", warmup_iters=3),
        ema=EMAConfig(decay=0.9),
        clip_grad_norm=5.0,
    )
    second: OptimizationConfig = OptimizationConfig(optimizer=OptimizerConfig(lr=1e-2))


def make_mlp(hidden: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.Linear(6, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Linear(hidden, 3),
    )


@fp32
def _mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(prediction, target)


class ToyTrainer:
    def __init__(self, config: ToyRunConfig, run: Run) -> None:
        self.run, self.config = run, config
        self.dataset = ToyDataset(config.toy.samples)
        self.model = run.prepare("model", make_mlp(config.toy.hidden, config.toy.dropout))
        self.opt = run.optimization(
            "model", self.model, self.model.parameters(), config.optimization
        )

    def step(
        self, batch: dict[str, torch.Tensor], iteration: int
    ) -> dict[str, torch.Tensor | float]:
        time.sleep(self.config.toy.sleep)
        with self.opt.accumulate():
            with self.run.autocast():
                prediction = self.model(batch["x"])
            loss = _mse(prediction, batch["y"])
            self.opt.backward(loss)
        bf16 = float(prediction.dtype == torch.bfloat16)
        return {
            "loss": loss,
            "forward_bf16": bf16,
            "loss_fp32": float(loss.dtype == torch.float32),
            **self.opt.step(iteration),
        }


class TwoModelTrainer(ToyTrainer):
    """A model plus a "critic" with its own optimizer, stepped after the model each iteration."""

    def __init__(self, config: ToyRunConfig, run: Run) -> None:
        super().__init__(config, run)
        self.critic = run.prepare(
            "critic", nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))
        )
        self.critic_opt = run.optimization(
            "critic", self.critic, self.critic.parameters(), config.second
        )

    def step(
        self, batch: dict[str, torch.Tensor], iteration: int
    ) -> dict[str, torch.Tensor | float]:
        logs = super().step(batch, iteration)
        with torch.no_grad():
            prediction = self.model(batch["x"])
        with self.critic_opt.accumulate():
            real, fake = self.critic(batch["y"]), self.critic(prediction)
            critic_loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
            self.critic_opt.backward(critic_loss)
        logs.update(
            {
                "critic_loss": critic_loss,
                **{f"critic_{k}": v for k, v in self.critic_opt.step(iteration).items()},
            }
        )
        return logs


def toy_config(
    iters: int = 12,
    batch_size: int = 8,
    accumulation: int = 1,
    checkpoint_interval: int = 4,
    strategy: Literal["ddp", "fsdp"] = "ddp",
    trainer: str = "toy_trainers:ToyTrainer",
    sleep: float = 0.0,
    keep_last: int | None = None,
    dropout: float = 0.1,
    samples: int = 37,
) -> ToyRunConfig:
    return ToyRunConfig(
        trainer=trainer,
        loop=LoopConfig(
            iters=iters,
            log_interval=1,
            checkpoint_interval=checkpoint_interval,
            accumulation=accumulation,
            keep_last=keep_last,
        ),
        loader=LoaderConfig(batch_size=batch_size, workers=0),
        strategy=StrategyConfig(kind=strategy, fsdp_min_params=100),
        toy=ToyOptions(sleep=sleep, dropout=dropout, samples=samples),
    )
