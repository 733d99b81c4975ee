"""Checkpoint retention: ``keep_last`` removes the oldest complete checkpoints only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from vq.core import launch
from vq.core.checkpoint import (
    Checkpointer,
    Tracked,
    TrainingState,
    complete_checkpoints,
    latest_checkpoint,
)


@pytest.fixture(autouse=True)
def group_of_one():
    launch.init_process_group()
    yield
    launch.destroy_process_group()


def test_keep_last_keeps_the_newest_checkpoints_and_latest(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    state = TrainingState(modules={"model": Tracked(model)})
    checkpointer = Checkpointer(tmp_path, fingerprint="f", strategy="ddp", keep_last=2)
    (tmp_path / ".iter_9.partial").mkdir()  # an interrupted write is not a checkpoint
    for iteration in range(1, 5):
        with torch.no_grad():
            model.weight.fill_(iteration)
        checkpointer.save(state, iteration)
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["iter_3", "iter_4"]
    assert latest_checkpoint(tmp_path) == tmp_path / "iter_4"
    weights = load_file(str(tmp_path / "latest" / "models" / "model.safetensors"))
    assert torch.equal(weights["weight"], torch.full((2, 2), 4.0))

    # without keep_last every checkpoint stays
    everything = Checkpointer(tmp_path / "all", fingerprint="f", strategy="ddp")
    (tmp_path / "all").mkdir()
    for iteration in range(1, 4):
        everything.save(state, iteration)
    assert len(complete_checkpoints(tmp_path / "all")) == 3
