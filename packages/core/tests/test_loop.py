"""The generic loop with vq-core alone: it trains, and a stopped run resumes bit for bit.

The trainer is an ``nn.Linear`` fitted to a fixed linear map on 20 random points. Its step
adds Gaussian noise from the global torch RNG to the inputs, so a resumed run matches one
that never stopped only if the checkpoint restored the RNG as well as the weights, the
Adam moments, the warm-up + cosine schedule and the data position (20 samples in batches
of 4: the runs below stop mid-epoch and cross an epoch boundary).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vq.core import launch
from vq.core.checkpoint import latest_checkpoint
from vq.core.data import LoaderConfig
from vq.core.loop import LoopConfig, Run, RunConfig, train
from vq.core.optim import OptimizationConfig, OptimizerConfig, ScheduleConfig
from vq.core.seeding import seed_everything
from vq.core.tensorfiles import read_tensors, read_torch


class Points(Dataset[dict[str, torch.Tensor]]):
    """20 points ``x`` (4-d) and their images ``y = x @ W`` (2-d) under a fixed map."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(20, 4, generator=g)  # (20, 4)
        self.y = self.x @ torch.randn(4, 2, generator=g)  # (20, 2)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


class LinearRunConfig(RunConfig):
    trainer: str = "linear"
    optimization: OptimizationConfig


class LinearTrainer:
    def __init__(self, config: LinearRunConfig, run: Run) -> None:
        self.dataset = Points()
        self.model = run.prepare("model", nn.Linear(4, 2))
        self.opt = run.optimization(
            "model", self.model, self.model.parameters(), config.optimization
        )
        self.losses: list[float] = []

    def step(self, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, Any]:
        x = batch["x"] + 0.01 * torch.randn_like(batch["x"])  # (4, 4), noise of the global RNG
        with self.opt.accumulate():
            loss = F.mse_loss(self.model(x), batch["y"])
            self.opt.backward(loss)
        self.losses.append(float(loss.detach()))
        return {"loss": loss, **self.opt.step(iteration)}


def config(iters: int, *, total_iters: int | None = None, **loop: int) -> LinearRunConfig:
    return LinearRunConfig(
        loop=LoopConfig(iters=iters, log_interval=1000, visual_interval=1000, **loop),
        loader=LoaderConfig(batch_size=4, workers=0),
        optimization=OptimizationConfig(
            optimizer=OptimizerConfig(kind="adam", lr=0.05),
            schedule=ScheduleConfig(kind="cosine", warmup_iters=2, total_iters=total_iters),
        ),
    )


@pytest.fixture(autouse=True)
def group_of_one():
    launch.init_process_group()
    yield
    launch.destroy_process_group()


def run_trainer(
    cfg: LinearRunConfig, work_dir: Path, resume_from: Path | None = None
) -> tuple[LinearTrainer, dict[str, float]]:
    seed_everything(0)
    run = Run(
        config=cfg, work_dir=work_dir, device=torch.device("cpu"), seed=0, resume_from=resume_from
    )
    trainer = LinearTrainer(cfg, run)
    return trainer, train(run, trainer)


def test_the_loop_lowers_the_loss(tmp_path: Path) -> None:
    trainer, logs = run_trainer(config(60, checkpoint_interval=1000), tmp_path)
    assert len(trainer.losses) == 60
    first, last = sum(trainer.losses[:3]) / 3, sum(trainer.losses[-3:]) / 3
    assert last < 0.05 * first, trainer.losses
    # The last log interval is the run's end; its mean loss is what train() returns.
    assert logs["loss"] == pytest.approx(sum(trainer.losses) / 60, rel=1e-5)
    assert trainer.opt.optimizer.param_groups[0]["lr"] < 1e-4  # the cosine ends at 0
    assert latest_checkpoint(tmp_path / "checkpoints") == tmp_path / "checkpoints" / "iter_60"


def checkpoint_tensors(checkpoint: Path) -> dict[str, Any]:
    """Weights, optimizer + scheduler state and loop position of a checkpoint, flattened."""
    state = read_torch(checkpoint / "state.pt")
    opt = state["optimizations"]["model"]
    return {
        **{
            f"weights.{k}": v
            for k, v in read_tensors(checkpoint / "models/model.safetensors").items()
        },
        **{f"adam.{i}.{k}": v for i, s in opt["optimizer"]["state"].items() for k, v in s.items()},
        "scheduler": opt["scheduler"],
        "steps": opt["steps"],
        "loop": state["loop"],
    }


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        same = torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else a[key] == b[key]
        assert same, key


def test_a_stopped_run_resumes_bit_identically(tmp_path: Path) -> None:
    # 7 iterations straight; 3, stop, resume from iter_3 to 7 (the schedule spans 7 in both).
    straight, _ = run_trainer(config(7, total_iters=7), tmp_path / "straight")
    run_trainer(config(3, total_iters=7), tmp_path / "stopped")
    stopped = tmp_path / "stopped" / "checkpoints"
    resumed, _ = run_trainer(config(7, total_iters=7), tmp_path / "stopped", stopped / "iter_3")

    assert len(resumed.losses) == 4  # iterations 4..7 only
    assert resumed.losses == straight.losses[3:]
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert_same(
        checkpoint_tensors(tmp_path / "straight/checkpoints/iter_7"),
        checkpoint_tensors(stopped / "iter_7"),
    )
    assert read_torch(stopped / "iter_7/state.pt")["loop"] == {
        "iteration": 7,
        "epoch": 1,  # 5 batches of 4 per epoch
        "samples_in_epoch": 8,
    }

    # The noise matters: without the saved RNG state the same resume goes elsewhere.
    (stopped / "iter_3/rng/rank0.pt").unlink()
    drifted, _ = run_trainer(config(7, total_iters=7), tmp_path / "drifted", stopped / "iter_3")
    assert drifted.losses != straight.losses[3:]
    assert not torch.equal(drifted.model.weight, straight.model.weight)
