"""The train command: bad input, registry discovery, a short run whose loss falls."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vq.core import amp
from vq.core.registry import TRAINERS, UnknownComponentError
from vq.train.cli import train_main

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "configs" / "demo" / "autoencoder_photos.py"


def test_installed_trainers_are_discovered_through_entry_points() -> None:
    assert "autoencoder" in TRAINERS.names()
    trainer = TRAINERS.get("autoencoder")
    assert trainer.__name__ == "AutoencoderTrainer"
    assert TRAINERS.get("autoencoder") is trainer  # cached
    with pytest.raises(
        UnknownComponentError, match=r"unknown trainer 'nope'.*installed: .*autoencoder"
    ):
        TRAINERS.get("nope")


def _fails_cleanly(capsys: pytest.CaptureFixture[str], argv: list[str], pattern: str) -> None:
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    assert re.search(pattern, err[0]), err[0]


@pytest.fixture
def unknown_trainer_config(tmp_path: Path) -> Path:
    path = tmp_path / "unknown.py"
    path.write_text(
        "from vq.core.loop import LoopConfig, RunConfig\n\n"
        "def config():\n    return RunConfig(trainer='vqganx', loop=LoopConfig(iters=1))\n"
    )
    return path


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--config-options", "itres:5"], r"does not take option 'itres'"),
        (["--config-options", "iters:'many'"], r"\.loop\.iters|iters.*integer"),
        (["--override", ".loop.itres:5"], r"\.loop\.itres: unknown field"),
        (["--override", "loop.iters:5"], r"must start with '\.' or '\['"),
        (["--override", ".loop.iters[:5"], r"malformed override path"),
        (["--override", ".modell.width:5"], r"\.modell does not exist"),
        (["--override", ".model.width::wide"], r"\.model\.width: .*integer"),
        (["--override", ".data.kind::imagenett"], r"\.data"),
        (["--config-options", "iters:__import__('os')"], r"is not a literal"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], pattern: str
) -> None:
    _fails_cleanly(capsys, ["x", str(DEMO), "--work-dirs", str(tmp_path), *extra], pattern)
    assert not (tmp_path / "x").exists()


def test_missing_config_and_unknown_trainer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, unknown_trainer_config: Path
) -> None:
    _fails_cleanly(capsys, ["x", str(tmp_path / "none.py")], r"config file not found: .*none\.py")
    _fails_cleanly(
        capsys, ["x", str(unknown_trainer_config)], r"unknown trainer 'vqganx'.*autoencoder"
    )


def test_bad_input_from_the_real_command_has_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vq.train", "x", str(DEMO), "--override", ".loop.nope:1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: override: .loop.nope: unknown field (misspelt?)"


def test_help_documents_every_option() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vq.train", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for option in [
        "--config-options",
        "--override",
        "--seed",
        "--autocast",
        "--load-model-from",
        "--load-from",
        "--auto-resume",
        "--nproc",
        "--work-dirs",
    ]:
        assert option in result.stdout


def _final_loss(log: Path) -> list[float]:
    return [float(m) for m in re.findall(r"l1_loss ([0-9.e-]+)", log.read_text())]


@pytest.mark.slow
def test_short_run_writes_products_and_loss_falls(tmp_path: Path) -> None:
    argv = [
        "demo",
        str(DEMO),
        "--work-dirs",
        str(tmp_path),
        "--config-options",
        "iters:40",
        "image_size:16",
        "--override",
        ".loop.log_interval:10",
        ".loop.checkpoint_interval:20",
        ".loop.visual_interval:20",
    ]
    assert train_main(argv) == 0
    work = tmp_path / "demo"
    logs = list((work / "logs").glob("*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert "command\ntrain demo" in text and '"iters": 40' in text
    losses = _final_loss(logs[0])
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    assert list((work / "tensorboard").glob("events.out.tfevents.*"))
    assert (work / "visuals" / "iter_40.png").is_file()
    assert (work / "checkpoints" / "latest").resolve().name == "iter_40"
    meta = json.loads((work / "checkpoints" / "iter_20" / "meta.json").read_text())
    assert meta["iteration"] == 20
    weights = load_file(str(work / "checkpoints" / "iter_40" / "models" / "model.safetensors"))
    assert weights and all(k.startswith(("encoder.", "decoder.")) for k in weights)

    # the resolved config is itself a config: train runs it again, to the same weights
    resolved = work / "autoencoder_photos.py"
    assert train_main(["again", str(resolved), "--work-dirs", str(tmp_path)]) == 0
    again = load_file(
        str(tmp_path / "again" / "checkpoints" / "iter_40" / "models" / "model.safetensors")
    )
    assert all((again[k] == weights[k]).all() for k in weights)


def test_autocast_on_a_cpu_without_bf16_kernels_says_so_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what a CPU without AVX512-BF16/AMX answers (test_amp checks the real answer)
    monkeypatch.setattr(amp, "cpu_has_kernels", lambda dtype: dtype != torch.bfloat16)
    argv = ["x", str(DEMO), "--work-dirs", str(tmp_path), "--config-options", "iters:1"]
    assert train_main([*argv, "image_size:16", "--autocast"]) == 0
    assert train_main(["y", *argv[1:], "image_size:16"]) == 0
    warning = "warning: --autocast: this CPU has no bfloat16 kernels"
    assert warning in next((tmp_path / "x" / "logs").glob("*.log")).read_text()
    assert "warning" not in next((tmp_path / "y" / "logs").glob("*.log")).read_text()
