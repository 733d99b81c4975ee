"""The training loop reads tensors to the host once per log interval, not per value.

A tiny trainer (``nn.Linear`` on random points, SGD with clipping) logs a tensor loss,
several more tensors and a Python float from every micro-batch. ``count_host_reads``
counts the reads ``train()`` makes outside data loading (the sampler's order is host data)
and checkpoint writing (which reads everything by design). Before #17 the loop read every
logged tensor of every micro-batch and the grad norm of every step: 12 iterations x 3
micro-batches x 7 values came to several hundred reads; now it is one per log line plus
one before a checkpoint that falls between two log lines.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from vq.core import loop
from vq.core.data import LoaderConfig
from vq.core.hostreads import HostReads, count_host_reads
from vq.core.loop import LoopConfig, NonFiniteLossError, Run, RunConfig, train
from vq.core.optim import OptimizationConfig, OptimizerConfig


class Noisy:
    """Fits ``nn.Linear(4, 1)`` to random targets; logs ``extra`` tensors besides the loss,
    and NaN as the loss of iteration ``nan_at`` (0: never)."""

    def __init__(self, run: Run, extra: int, nan_at: int = 0) -> None:
        g = torch.Generator().manual_seed(0)
        self.dataset = TensorDataset(
            torch.randn(40, 4, generator=g), torch.randn(40, 1, generator=g)
        )
        self.model = run.prepare("model", nn.Linear(4, 1))
        config = OptimizationConfig(optimizer=OptimizerConfig(kind="sgd"), clip_grad_norm=0.1)
        self.opt = run.optimization("model", self.model, self.model.parameters(), config)
        self.extra = extra
        self.nan_at = nan_at

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], iteration: int) -> dict[str, Any]:
        x, y = batch  # (4, 4), (4, 1)
        with self.opt.accumulate():
            loss = (self.model(x) - y).pow(2).mean()
            self.opt.backward(loss)
        if iteration == self.nan_at:
            loss = loss * float("nan")
        logs: dict[str, Any] = {"loss": loss, "scale": 2.0}  # a float is read by no one
        logs.update({f"power_{i}": loss.detach() ** i for i in range(self.extra)})
        return {**logs, **self.opt.step(iteration)}  # lr (float), grad_norm (tensor)


def make_run(tmp_path: Path, accumulation: int) -> Run:
    config = RunConfig(
        trainer="noisy",
        loop=LoopConfig(iters=12, log_interval=4, checkpoint_interval=6, accumulation=accumulation),
        loader=LoaderConfig(batch_size=4),
    )
    return Run(config, tmp_path, torch.device("cpu"), seed=0)


@contextlib.contextmanager
def loop_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostReads]:
    """Host reads of the loop and the trainer: data loading and checkpoint writing paused."""
    with count_host_reads() as reads:
        for owner, name in ((loop._Batches, "next"), (loop.Checkpointer, "save")):
            original = getattr(owner, name)

            def paused(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
                with reads.paused():
                    return __original(*args, **kwargs)

            monkeypatch.setattr(owner, name, paused)
        yield reads


@pytest.mark.parametrize(("accumulation", "extra"), [(1, 0), (3, 5)])
def test_one_read_per_log_interval_whatever_the_micro_batches_and_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accumulation: int, extra: int
) -> None:
    run = make_run(tmp_path, accumulation)
    trainer = Noisy(run, extra)
    with loop_reads(monkeypatch) as reads:
        logs = train(run, trainer)
    # logs at 4, 8, 12 (one batched read each); checkpoints at 6 (checked: one read) and 12
    # (checked by the log read of the same iteration)
    assert len(reads) == 4, reads.sites()
    assert set(logs) == {"loss", "scale", "lr", "grad_norm", *(f"power_{i}" for i in range(extra))}
    assert all(isinstance(v, float) for v in logs.values())
    assert logs["scale"] == 2.0 and logs["grad_norm"] > 0


def test_the_counter_sees_a_loop_that_reads_every_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counter is not blind: a trainer that reads its loss each step is counted."""
    run = make_run(tmp_path, accumulation=3)
    trainer = Noisy(run, extra=0)
    step = trainer.step

    def reading(batch: Any, iteration: int) -> dict[str, Any]:
        logs = step(batch, iteration)
        return {**logs, "read": logs["loss"].item()}

    monkeypatch.setattr(trainer, "step", reading)
    with loop_reads(monkeypatch) as reads:
        train(run, trainer)
    assert len(reads) == 4 + 12 * 3


@pytest.mark.parametrize(
    ("nan_at", "last_good"),
    [
        (2, None),
        (5, None),
        (7, "iter_6"),
    ],  # found at the log of 4, the checkpoint of 6, the log of 8
)
def test_a_nan_between_checks_names_its_iteration_and_never_reaches_a_checkpoint(
    tmp_path: Path, nan_at: int, last_good: str | None
) -> None:
    run = make_run(tmp_path, accumulation=2)
    with pytest.raises(NonFiniteLossError) as error:
        train(run, Noisy(run, extra=1, nan_at=nan_at))
    message = str(error.value)
    assert message.startswith(f"non-finite values at iteration {nan_at}: loss nan")
    assert "power_0 1 " in message and "lr 0.0001" in message  # what that iteration logged
    saved = sorted(p.name for p in (tmp_path / "checkpoints").glob("iter_*"))
    if last_good is None:
        assert saved == [] and "last good checkpoint" not in message
    else:
        assert saved == [last_good]
        assert message.endswith(f"; last good checkpoint: {tmp_path / 'checkpoints' / last_good}")
