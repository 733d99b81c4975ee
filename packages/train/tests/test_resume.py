"""Exact resume: SIGKILL mid-run, a kill during a checkpoint write, a full disk, FSDP,
and --load-model-from combined with a resume."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vq.core import checkpoint as checkpoint_module
from vq.core.checkpoint import complete_checkpoints, latest_checkpoint
from vq.core.tensorfiles import load_weights
from vq.core.testing import run_distributed
from vq.train.cli import consolidate_main, train_main

TESTS = Path(__file__).parent
CONFIG = TESTS / "configs" / "toy.py"
ITERS = 14


def _command(name: str, work: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vq.train", name, str(CONFIG), "--work-dirs", str(work), *extra]


def _tensors(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Every tensor a checkpoint holds: weights, EMA, optimizer and scheduler state."""
    out: dict[str, torch.Tensor] = {}
    for f in sorted((checkpoint / "models").glob("*.safetensors")):
        out.update({f"{f.name}:{k}": v for k, v in load_file(str(f)).items()})
    state = torch.load(checkpoint / "state.pt", weights_only=True)

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, torch.Tensor):
            out[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        elif isinstance(value, int | float):
            out[prefix] = torch.tensor(value)

    walk("state", state)
    return out


def _assert_identical(a: Path, b: Path) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, different[:5]


def _kill_after(command: list[str], checkpoint: Path) -> None:
    """Start ``command``, SIGKILL its whole process group once ``checkpoint`` is complete."""
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (checkpoint / "meta.json").is_file():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("trainer", "nproc"),
    [
        ("toy_trainers:ToyTrainer", 1),
        ("toy_trainers:ToyTrainer", 2),
        ("toy_trainers:TwoModelTrainer", 1),
    ],
    ids=["one-process", "two-processes", "two-models"],
)
def test_sigkill_then_auto_resume_is_bit_identical(
    tmp_path: Path, trainer: str, nproc: int
) -> None:
    options = ["--config-options", f"iters:{ITERS}", "checkpoint_interval:3", f"trainer::{trainer}"]
    launch = ["--nproc", str(nproc)]
    straight = subprocess.run(
        _command("straight", tmp_path, *options, *launch), capture_output=True, text=True
    )
    assert straight.returncode == 0, straight.stderr[-2000:]

    # killed mid-epoch (37 samples, batch 8: epochs of 4 iterations) at a random checkpoint
    kill_at = random.Random(nproc).choice([3, 6, 9])
    slow = [*options, "sleep:0.15"]
    _kill_after(
        _command("killed", tmp_path, *slow, *launch),
        tmp_path / "killed" / "checkpoints" / f"iter_{kill_at}",
    )
    resumed = subprocess.run(
        _command("killed", tmp_path, *slow, *launch, "--auto-resume"),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    _assert_identical(
        tmp_path / "straight" / "checkpoints" / f"iter_{ITERS}",
        tmp_path / "killed" / "checkpoints" / f"iter_{ITERS}",
    )


DIE_IN_CHECKPOINT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import vq.core.checkpoint as c
save = c._torch_save
def dying(obj, path):
    if ".iter_6.partial" in str(path):
        os.kill(os.getpid(), signal.SIGKILL)
    save(obj, path)
c._torch_save = dying
from vq.train.cli import train_main
train_main({argv!r})
"""


@pytest.mark.slow
def test_kill_during_checkpoint_write_keeps_previous_latest(tmp_path: Path) -> None:
    argv = [
        "run",
        str(CONFIG),
        "--work-dirs",
        str(tmp_path),
        "--config-options",
        "iters:9",
        "checkpoint_interval:3",
    ]
    code = DIE_IN_CHECKPOINT.format(tests=str(TESTS), argv=argv)
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / ".iter_6.partial").is_dir()
    assert latest_checkpoint(checkpoints) == checkpoints / "iter_3"
    assert [p.name for p in complete_checkpoints(checkpoints)] == ["iter_3"]
    # resuming ignores the partial directory and reaches the uninterrupted result
    assert train_main([*argv, "--auto-resume"]) == 0
    assert train_main(["straight", *argv[1:]]) == 0
    _assert_identical(checkpoints / "iter_9", tmp_path / "straight" / "checkpoints" / "iter_9")


def test_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    save = checkpoint_module._save_tensors

    def full_disk(tensors: dict[str, torch.Tensor], path: Path) -> None:
        if ".iter_4." in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        save(tensors, path)

    monkeypatch.setattr(checkpoint_module, "_save_tensors", full_disk)
    argv = [
        "run",
        str(CONFIG),
        "--work-dirs",
        str(tmp_path),
        "--config-options",
        "iters:6",
        "checkpoint_interval:2",
    ]
    assert train_main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "could not write checkpoint iter_4: No space left on device" in err
    assert "the previous checkpoint iter_2 is intact" in err
    checkpoints = tmp_path / "run" / "checkpoints"
    assert not list(checkpoints.glob(".iter_4*"))
    assert latest_checkpoint(checkpoints) == checkpoints / "iter_2"
    assert json.loads((checkpoints / "iter_2" / "meta.json").read_text())["iteration"] == 2
    monkeypatch.setattr(checkpoint_module, "_save_tensors", save)
    assert train_main([*argv, "--auto-resume"]) == 0


def test_incomplete_and_foreign_checkpoints_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "run",
        str(CONFIG),
        "--work-dirs",
        str(tmp_path),
        "--config-options",
        "iters:2",
        "checkpoint_interval:2",
    ]
    assert train_main(base) == 0
    done = tmp_path / "run" / "checkpoints" / "iter_2"
    capsys.readouterr()
    assert train_main([*base, "samples:30", "--load-from", str(done)]) == 2
    assert "belongs to a different config" in capsys.readouterr().err
    partial = tmp_path / "partial"
    partial.mkdir()
    assert train_main([*base, "--load-from", str(partial)]) == 2
    assert "is incomplete (no meta.json)" in capsys.readouterr().err
    assert train_main([*base, "--load-from", str(tmp_path / "nope")]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err


def _fsdp(work: str, name: str, *extra: str) -> int:
    return train_main(
        [
            name,
            str(CONFIG),
            "--work-dirs",
            work,
            "--config-options",
            "iters:8",
            "checkpoint_interval:4",
            "strategy::fsdp",
            "dropout:0.0",
            *extra,
        ]
    )


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_save_resume_and_consolidate_round_trip(tmp_path: Path) -> None:
    work = str(tmp_path)
    assert run_distributed(_fsdp, 2, work, "straight") == [0, 0]
    middle = tmp_path / "straight" / "checkpoints" / "iter_4"
    assert (middle / "dcp").is_dir()
    assert run_distributed(_fsdp, 2, work, "resumed", "--load-from", str(middle)) == [0, 0]
    for name in ("straight", "resumed"):
        assert (
            consolidate_main(
                [
                    str(tmp_path / name / "checkpoints" / "iter_8"),
                    str(tmp_path / f"{name}.safetensors"),
                ]
            )
            == 0
        )
    a, b = (
        load_file(str(tmp_path / "straight.safetensors")),
        load_file(str(tmp_path / "resumed.safetensors")),
    )
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a consolidated file loads into the plain model
    assert (
        train_main(
            [
                "plain",
                str(CONFIG),
                "--work-dirs",
                work,
                "--load-model-from",
                str(tmp_path / "straight.safetensors"),
                "--config-options",
                "iters:1",
                "checkpoint_interval:1",
                "dropout:0.0",
            ]
        )
        == 0
    )


def test_load_model_from_reports_and_later_files_win(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    first, second = tmp_path / "a.safetensors", tmp_path / "b.pt"
    save_file(
        {"0.weight": torch.ones(3, 2), "0.bias": torch.ones(3), "extra": torch.zeros(1)}, str(first)
    )
    torch.save({"0.weight": torch.full((3, 2), 2.0), "1.weight": torch.zeros(5, 5)}, second)
    report = load_weights(model, [first, second])
    assert torch.equal(model[0].weight, torch.full((3, 2), 2.0))
    assert torch.equal(model[0].bias, torch.ones(3))
    assert report.unexpected == ["extra"]
    assert report.mismatched == ["1.weight"]
    assert report.missing == ["1.bias", "1.weight"]


def test_load_model_from_does_not_clobber_a_resume(tmp_path: Path) -> None:
    common = [
        str(CONFIG),
        "--work-dirs",
        str(tmp_path),
        "--config-options",
        "iters:6",
        "checkpoint_interval:3",
    ]
    assert train_main(["straight", *common]) == 0
    noise = tmp_path / "noise.safetensors"
    weights = load_file(
        str(tmp_path / "straight" / "checkpoints" / "iter_3" / "models" / "model.safetensors")
    )
    save_file({k: torch.randn_like(v) for k, v in weights.items()}, str(noise))
    # the same run continued from iter_3 with --load-model-from: the checkpoint wins
    work2 = tmp_path / "second"
    work2.mkdir()
    (work2 / "continued" / "checkpoints").mkdir(parents=True)
    os.symlink(
        tmp_path / "straight" / "checkpoints" / "iter_3",
        work2 / "continued" / "checkpoints" / "iter_3",
    )
    args = [
        "continued",
        str(CONFIG),
        "--work-dirs",
        str(work2),
        "--config-options",
        "iters:6",
        "checkpoint_interval:3",
    ]
    assert (
        train_main(
            [
                *args,
                "--load-from",
                str(work2 / "continued" / "checkpoints" / "iter_3"),
                "--load-model-from",
                str(noise),
                "--override",
                ".trainer.callbacks[-1].load_state_dict:dict(strict=False)",
            ]
        )
        == 0
    )
    _assert_identical(
        tmp_path / "straight" / "checkpoints" / "iter_6",
        work2 / "continued" / "checkpoints" / "iter_6",
    )
