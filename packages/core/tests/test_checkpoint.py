"""Checkpoints with vq-core alone: retention (``keep_last``), the ``latest`` pointer, a full
round trip of a run's state, and damaged checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

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
from vq.core.errors import UserError
from vq.core.optim import Optimization, OptimizationConfig, OptimizerConfig, ScheduleConfig


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


def trained_state(seed: int, steps: int = 3) -> tuple[nn.Module, Optimization, TrainingState]:
    """A ``Linear(3, 2)`` (with a frozen ``Linear(2, 2)`` ``teacher``) after ``steps`` Adam
    steps on a warm-up + cosine schedule, registered as a run registers it."""
    torch.manual_seed(seed)
    model = nn.Module()
    model.student, model.teacher = nn.Linear(3, 2), nn.Linear(2, 2)
    config = OptimizationConfig(
        optimizer=OptimizerConfig(kind="adam", lr=0.1),
        schedule=ScheduleConfig(kind="cosine", warmup_iters=2),
    )
    opt = Optimization("model", model, model.student.parameters(), config, total_iters=10)
    for _ in range(steps):
        loss = model.student(torch.randn(5, 3)).square().mean()  # (5, 2) -> ()
        opt.backward(loss)
        opt.step()
    state = TrainingState(
        modules={"model": Tracked(model, exclude=("teacher",))},
        optimizations={"model": opt},
        loop={"iteration": steps, "epoch": 0, "samples_in_epoch": 5 * steps},
    )
    return model, opt, state


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists of tensors and numbers -> ``{path: leaf}``."""
    if isinstance(value, dict):
        return {
            k: v for key, item in value.items() for k, v in flat(item, f"{prefix}.{key}").items()
        }
    if isinstance(value, list | tuple):
        return {
            k: v for i, item in enumerate(value) for k, v in flat(item, f"{prefix}[{i}]").items()
        }
    return {prefix: value}


def assert_equal_trees(a: Any, b: Any) -> None:
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    for key in fa:
        x, y = fa[key], fb[key]
        assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y, key


def test_a_checkpoint_restores_model_optimizer_schedule_rng_and_iteration(tmp_path: Path) -> None:
    model, opt, state = trained_state(seed=0)
    checkpointer = Checkpointer(tmp_path, fingerprint="f", strategy="ddp")
    torch.manual_seed(1234)
    checkpointer.save(state, 3)
    draws = torch.rand(4)  # what the RNG gives right after the save

    fresh_model, fresh_opt, fresh_state = trained_state(seed=7, steps=0)
    teacher = {k: v.clone() for k, v in fresh_model.teacher.state_dict().items()}
    fresh_state.loop = {}
    meta = checkpointer.load(fresh_state, tmp_path / "latest")

    assert meta["iteration"] == 3 and meta["modules"] == {"model": ["teacher"]}
    assert torch.equal(torch.rand(4), draws)
    assert fresh_state.loop == {"iteration": 3, "epoch": 0, "samples_in_epoch": 15}
    for name in ("weight", "bias"):
        assert torch.equal(getattr(fresh_model.student, name), getattr(model.student, name))
    assert_equal_trees(fresh_opt.state_dict(), opt.state_dict())  # Adam moments, schedule, steps
    assert fresh_opt.scheduler.get_last_lr() == opt.scheduler.get_last_lr()
    # The frozen teacher is in no checkpoint and keeps its own weights on load.
    saved = load_file(str(tmp_path / "iter_3" / "models" / "model.safetensors"))
    assert sorted(saved) == ["student.bias", "student.weight"]
    assert_equal_trees(fresh_model.teacher.state_dict(), teacher)


def test_latest_names_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    _, _, state = trained_state(seed=0, steps=0)
    checkpointer = Checkpointer(tmp_path, fingerprint="f", strategy="ddp")
    assert latest_checkpoint(tmp_path) is None
    for iteration in (2, 4):
        checkpointer.save(state, iteration)
        assert (tmp_path / "latest").readlink() == Path(f"iter_{iteration}")
    # A write that never finished is no checkpoint, whatever its number.
    (tmp_path / "iter_9").mkdir()
    (tmp_path / ".iter_11.partial").mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "iter_4"
    # A latest link to a removed checkpoint falls back to the newest complete one.
    shutil.rmtree(tmp_path / "iter_4")
    assert latest_checkpoint(tmp_path) == tmp_path / "iter_2"
    with pytest.raises(UserError, match="iter_9 is incomplete"):
        checkpointer.load(state, tmp_path / "iter_9")
    with pytest.raises(UserError, match="belongs to a different config"):
        Checkpointer(tmp_path, fingerprint="g", strategy="ddp").load(state, tmp_path / "iter_2")


def test_a_damaged_newest_checkpoint_points_to_the_newest_intact_one(tmp_path: Path) -> None:
    _, _, state = trained_state(seed=0)
    checkpointer = Checkpointer(tmp_path, fingerprint="f", strategy="ddp")
    for iteration in (1, 2, 3):
        state.loop["iteration"] = iteration
        checkpointer.save(state, iteration)
    (tmp_path / "iter_2" / "state.pt").write_bytes(b"")  # the next older one is damaged too
    weights = tmp_path / "iter_3" / "models" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])  # truncated, as by a full disk

    hint = f"the newest intact checkpoint is {tmp_path / 'iter_1'}: resume from it with --load-from"
    for refuse in (checkpointer.verify, lambda path: checkpointer.load(state, path)):
        with pytest.raises(UserError) as error:
            refuse(tmp_path / "latest")
        message = str(error.value)
        assert message.startswith(f"checkpoint {tmp_path / 'iter_3'} is damaged: ")
        assert str(weights) in message and hint in message and "\n" not in message
    # Nothing fell back silently; the intact one resumes.
    assert latest_checkpoint(tmp_path) == tmp_path / "iter_3"
    assert checkpointer.load(state, tmp_path / "iter_1")["iteration"] == 1
    assert state.loop["iteration"] == 1
