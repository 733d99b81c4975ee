"""The train command on damaged files: one ``error:`` line and exit 2, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vq.train.cli import train_main

CONFIG = Path(__file__).parent / "configs" / "toy.py"


def argv(work: Path, *extra: str) -> list[str]:
    options = ["--config-options", "iters:4", "checkpoint_interval:2"]
    return ["run", str(CONFIG), "--work-dirs", str(work), *options, *extra]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one ``error:`` line, which ends the output (log lines may come before it)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    return lines[-1]


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_random_weights_file_is_one_line(tmp_path: Path, capsys, suffix: str) -> None:
    weights = tmp_path / f"random{suffix}"
    weights.write_bytes(os.urandom(4096))
    assert train_main(argv(tmp_path, "--load-model-from", str(weights))) == 2
    assert f"cannot read {weights}" in one_error_line(capsys)


@pytest.mark.parametrize("damaged", ["state.pt", "models/model.safetensors"])
def test_auto_resume_from_a_damaged_latest_names_the_intact_checkpoint(
    tmp_path: Path, capsys, damaged: str
) -> None:
    assert train_main(argv(tmp_path)) == 0
    checkpoints = (tmp_path / "run" / "checkpoints").resolve()
    file = checkpoints / "iter_4" / damaged
    file.write_bytes(file.read_bytes()[:100])
    capsys.readouterr()

    assert train_main(argv(tmp_path, "--auto-resume")) == 2
    error = one_error_line(capsys)
    assert f"checkpoint {checkpoints / 'iter_4'} is damaged: cannot read {file}" in error
    assert f"--load-from {checkpoints / 'iter_2'}" in error
    assert train_main(argv(tmp_path, "--load-from", str(checkpoints / "iter_2"))) == 0


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file below ``directory`` (symlinks as their target) and its bytes."""
    found = {}
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            found[str(path)] = os.readlink(path).encode()
        elif path.is_file():
            found[str(path)] = path.read_bytes()
    return found


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--auto-resume", "--config-options", "samples:30"], "belongs to a different config"),
        (["--load-from", "{work}/run/checkpoints/iter_99"], "no such checkpoint directory"),
        (["--load-model-from", "{work}/random.safetensors"], "cannot read"),
        (["--load-model-from", "{work}/nowhere.pt"], "not found"),
        (["--auto-resume"], "is damaged"),
    ],
)
def test_a_refused_launch_leaves_every_file_of_the_run_as_it_was(
    tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    assert train_main(argv(tmp_path)) == 0
    (tmp_path / "random.safetensors").write_bytes(os.urandom(512))
    if message == "is damaged":
        state = tmp_path / "run" / "checkpoints" / "iter_4" / "state.pt"
        state.write_bytes(state.read_bytes()[:50])
    before = snapshot(tmp_path)
    capsys.readouterr()

    extra = [e.format(work=tmp_path) for e in extra]
    assert train_main([*argv(tmp_path), *extra]) == 2
    assert message in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_a_work_dir_that_cannot_be_created_is_one_line(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert train_main(argv(blocker)) == 2
    assert f"cannot create work dir {blocker / 'run'}" in one_error_line(capsys)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.syspath_prepend(str(CONFIG.parent.parent))  # where the toy config imports from
    import toy_trainers

    step = toy_trainers.ToyTrainer.step

    def diverging(self, batch, iteration):
        logs = step(self, batch, iteration)
        return {**logs, "loss": float("nan")} if iteration == 3 else logs

    monkeypatch.setattr(toy_trainers.ToyTrainer, "step", diverging)
    assert train_main(argv(tmp_path)) == 1
    error = one_error_line(capsys)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert "non-finite values at iteration 3" in error and "loss nan" in error.lower()
    assert f"last good checkpoint: {checkpoints / 'iter_2'}" in error
    assert sorted(p.name for p in checkpoints.glob("iter_*")) == ["iter_2"]
