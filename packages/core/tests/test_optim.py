"""LR schedules, the optimisation step (clipping, accumulation) and weight EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vq.core.ema import EMAConfig
from vq.core.optim import (
    Optimization,
    OptimizationConfig,
    OptimizerConfig,
    ScheduleConfig,
    build_scheduler,
    lr_factor,
)


def test_vqkd_warmup_then_cosine_matches_the_reference_schedule() -> None:
    schedule = ScheduleConfig(kind="cosine", warmup_iters=25_000, min_lr=1e-5)
    base = 2e-4
    assert lr_factor(schedule, base, 250_000, 0) == pytest.approx(1e-8)
    assert lr_factor(schedule, base, 250_000, 12_500) == pytest.approx(0.5, rel=1e-6)
    assert lr_factor(schedule, base, 250_000, 25_000) == pytest.approx(1.0)
    middle = 25_000 + 112_500
    expected = (1e-5 + (base - 1e-5) * 0.5 * (1 + math.cos(math.pi * 0.5))) / base
    assert lr_factor(schedule, base, 250_000, middle) == pytest.approx(expected)
    assert lr_factor(schedule, base, 250_000, 250_000) * base == pytest.approx(1e-5)


def test_the_cosine_floor_is_absolute_in_every_parameter_group() -> None:
    # groups with different LRs (e.g. a decoder at 10x): each warms up, decays and ends at
    # min_lr itself, not at min_lr scaled by the first group's ratio
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 1e-4}])
    schedule = ScheduleConfig(kind="cosine", warmup_iters=2, min_lr=1e-5)
    scheduler = build_scheduler(optimizer, schedule, total_iters=10)
    lrs = []
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        lrs.append([group["lr"] for group in optimizer.param_groups])
    assert lrs[1] == pytest.approx([1e-3, 1e-4])  # warmed up
    assert lrs[-1] == pytest.approx([1e-5, 1e-5])
    assert all(first >= second for first, second in lrs[1:])  # the larger LR stays larger


def test_clipping_accumulation_and_ema() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    config = OptimizationConfig(
        optimizer=OptimizerConfig(kind="sgd", lr=0.1, momentum=0.0),
        clip_grad_norm=0.5,
        ema=EMAConfig(decay=0.5),
    )
    opt = Optimization("m", model, model.parameters(), config, total_iters=10, accumulation=2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(8, 4) * 10
    for half in (x[:4], x[4:]):
        with opt.accumulate():
            opt.backward(model(half).pow(2).mean())
        logs = opt.step(1)
    # one step over both halves, the gradient clipped to norm 0.5: weights moved by lr * 0.5
    assert logs["grad_norm"] > 0.5
    moved = torch.cat([(model.state_dict()[k] - start[k]).flatten() for k in start])
    assert moved.norm() == pytest.approx(0.1 * 0.5, rel=1e-5)
    # EMA with decay 0.5 after one step: halfway between the old and the new weights
    for k, v in model.state_dict().items():
        torch.testing.assert_close(opt.ema.shadow[k], (start[k] + v) / 2)
