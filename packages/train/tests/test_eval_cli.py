"""The ``test``, ``val`` and ``fid`` commands on a tiny trained VQGAN run, with a random
(Kaiming re-initialised) Inception network saved to a temporary file."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vq.core.configfile import load_config
from vq.core.tensorfiles import load_weights
from vq.train.cli import train_main
from vq.train.data import TokenFileDataset, build_dataset, collate, to_uint8
from vq.train.eval_cli import command_main
from vq.train.metrics import FIDStatistics, read_metrics_json, reconstruction_metrics

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "configs" / "demo" / "vqgan_photos.py"
OPTIONS = ["image_size:16", "batch_size:8", "num_codes:32", "workers:0"]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 4-iteration VQGAN run on 16 px photos with checkpoints iter_2 and iter_4."""
    root = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    argv = ["tiny", str(DEMO), "--work-dirs", str(root), "--config-options", *OPTIONS, "iters:4"]
    assert train_main([*argv, "--override", ".loop.checkpoint_interval:2"]) == 0
    return root / "tiny"


@pytest.fixture
def inception(random_inception: Path) -> Path:
    return random_inception


def _by_hand(run: Path, checkpoint: str) -> dict[str, float]:
    """PSNR and codebook numbers of a checkpoint computed directly on the 9 val images."""
    config = load_config(run / "vqgan_photos.py")
    tokenizer = config.build_tokenizer()
    load_weights(tokenizer, [run / "checkpoints" / checkpoint])
    batch = collate(list(build_dataset(config.data, "val")))
    with torch.no_grad():
        ids = tokenizer.eval().encode(batch["image"])  # (9, 4, 4)
        pixels = to_uint8(tokenizer.decode(ids))
    counts = torch.bincount(ids.flatten(), minlength=tokenizer.num_codes).double()
    p = counts[counts > 0] / counts.sum()
    return {
        "psnr": float(reconstruction_metrics(pixels, batch["original_image"])["psnr"].mean()),
        "codebook_usage": float((counts > 0).sum()) / tokenizer.num_codes,
        "codebook_entropy": float(-(p * p.log()).sum()),
    }


def test_test_command_writes_fidelity_reconstruction_and_codebook_metrics(run, inception, tmp_path):
    stats = tmp_path / "photos_val_16.npz"
    argv = ["tiny", str(run / "vqgan_photos.py"), "--work-dirs", str(tmp_path)]
    argv += ["--load-model-from", str(run / "checkpoints" / "iter_4")]
    argv += ["--inception", str(inception), "--fid-statistics", str(stats), "--require-fid"]
    assert command_main("test", [*argv, "--batch-size", "4", "--tokenize", "--ten-crop"]) == 0
    record = read_metrics_json(tmp_path / "tiny_test" / "metrics.json")
    assert record["iteration"] == 4 and record["image_count"] == 9
    assert record["reference"] == "photos_val_16"
    assert record["preprocessing"]["transform"].startswith("none")
    metrics = record["metrics"]
    for key in ("l1_image_loss", "mse_image_loss", "ssim", "isc_mean"):
        assert math.isfinite(metrics[key]), key
    assert metrics["fid"] > 1.0  # 4 iterations of training do not reconstruct photos
    expected = _by_hand(run, "iter_4")
    for key, value in expected.items():
        # the command decodes in batches of 4, by hand in one of 9: fp32 convolutions differ
        # in the last bits, which PSNR's log turns into a few 1e-6 relative
        assert metrics[key] == pytest.approx(value, rel=1e-5), key

    val_tokens = TokenFileDataset(tmp_path / "tiny_test" / "tokens_val.safetensors")
    assert len(val_tokens) == 9 and val_tokens.grid == (4, 4)
    crops = TokenFileDataset(tmp_path / "tiny_test" / "tokens_train_tencrop.safetensors")
    assert len(crops) == 45 * 10 and crops[9]["id"].endswith("/crop9")

    # the cache written in that pass equals what the fid command computes on its own
    again = tmp_path / "again.npz"
    fid_argv = [str(run / "vqgan_photos.py"), "--inception", str(inception), "--out", str(again)]
    assert command_main("fid", [*fid_argv, "--batch-size", "5"]) == 0
    first, second = FIDStatistics.load(stats), FIDStatistics.load(again)
    assert first.metadata == second.metadata and first.metadata["image_count"] == 9
    np.testing.assert_allclose(first.mu, second.mu, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(first.sigma, second.sigma, rtol=1e-4, atol=1e-6)


def _validated(work_dir: Path) -> list[str]:
    """Checkpoint names of every "validating iter_N" line of every val log."""
    lines = []
    for log in sorted((work_dir / "val" / "logs").glob("*.log")):
        lines += [
            line.split("validating ")[1].split()[0]
            for line in log.read_text().splitlines()
            if " validating iter_" in line
        ]
    return lines


def test_val_validates_each_checkpoint_once(run, tmp_path):
    argv = ["tiny", str(run / "vqgan_photos.py"), "--work-dirs", str(run.parent)]
    argv += ["--inception", str(tmp_path / "absent.pth")]  # FID skipped with a log line
    assert command_main("val", argv) == 0
    assert command_main("val", argv) == 0  # nothing new: validates nothing
    assert _validated(run) == ["iter_2", "iter_4"]
    for name in ("iter_2", "iter_4"):
        record = read_metrics_json(run / "val" / name / "metrics.json")
        assert record["iteration"] == int(name[5:]) and "fid" not in record["metrics"]
    assert read_metrics_json(run / "val" / "iter_2" / "metrics.json")["metrics"][
        "codebook_entropy"
    ] == pytest.approx(_by_hand(run, "iter_2")["codebook_entropy"], rel=1e-6)
    assert list((run / "tensorboard").glob("events.*"))
    assert command_main("val", [*argv, "--load-from", "iter_9"]) == 2  # not a checkpoint


def test_val_watch_follows_a_live_run_and_exits_after_the_last_checkpoint(tmp_path):
    options = ["--config-options", *OPTIONS, "iters:6"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    val = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vq.train.eval_cli",
            "val",
            "live",
            str(DEMO),
            *options,
            "--work-dirs",
            str(tmp_path),
            "--watch",
            "--poll-seconds",
            "0.2",
            "--nproc",
            "1",
            "--inception",
            str(tmp_path / "absent.pth"),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        argv = ["live", str(DEMO), "--work-dirs", str(tmp_path), *options]
        assert train_main([*argv, "--override", ".loop.checkpoint_interval:2"]) == 0
        _, stderr = val.communicate(timeout=300)
    finally:
        val.kill()
    assert val.returncode == 0, stderr
    assert _validated(tmp_path / "live") == ["iter_2", "iter_4", "iter_6"]
    for name in ("iter_2", "iter_4", "iter_6"):
        metrics = json.loads((tmp_path / "live" / "val" / name / "metrics.json").read_text())
        assert metrics["image_count"] == 9


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*")) if root.exists() else set()


def test_refused_val_and_test_write_nothing(run, tmp_path, capsys):
    config = str(run / "vqgan_photos.py")
    # a run without checkpoints: refused before its val dir exists
    assert command_main("val", ["ghost", config, "--work-dirs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'ghost' / 'checkpoints'} does not exist "
                   "(no checkpoints to validate)"]  # fmt: skip
    assert _files(tmp_path) == set()
    # a checkpoint name the run does not have: nothing added to the run
    before = _files(run)
    argv = ["tiny", config, "--work-dirs", str(run.parent), "--load-from", "iter_9"]
    assert command_main("val", argv) == 2
    assert _files(run) == before
    # test with a weights file that is not there: no NAME_test dir
    missing = tmp_path / "missing.safetensors"
    argv = ["tiny", config, "--work-dirs", str(tmp_path), "--load-model-from", str(missing)]
    assert command_main("test", argv) == 2
    assert str(missing) in capsys.readouterr().err
    assert _files(tmp_path) == set()
