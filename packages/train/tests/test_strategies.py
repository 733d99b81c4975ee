"""DDP, FSDP, accumulation and autocast through the real train command (gloo on CPU)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vq.core.amp import fp32
from vq.core.testing import run_distributed
from vq.train.cli import consolidate_main, train_main

CONFIG = Path(__file__).parent / "configs" / "toy.py"


def _train(work: str, name: str, *options: str) -> int:
    return train_main([name, str(CONFIG), "--work-dirs", work, "--config-options", *options])


def _train_deterministic(work: str, name: str, *options: str) -> int:
    """Without dropout (ranks draw different masks) and with 32 samples (every batch layout
    below then cuts epochs at the same samples): only then can N processes match one."""
    return _train(work, name, "dropout:0.0", "samples:32", *options)


def _weights(work: Path, name: str, iteration: int) -> dict[str, torch.Tensor]:
    return load_file(
        str(work / name / "checkpoints" / f"iter_{iteration}" / "models" / "model.safetensors")
    )


def _losses(work: Path, name: str) -> list[float]:
    log = next((work / name / "logs").glob("*.log")).read_text()
    return [float(v) for v in re.findall(r" loss ([0-9.e+-]+)", log)]


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=k)


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_fsdp_and_accumulation_match_one_process(tmp_path: Path) -> None:
    work = str(tmp_path)
    # reference: one process, global batch 8
    assert _train_deterministic(work, "single", "iters:12", "checkpoint_interval:12") == 0
    # one process, 2 micro-batches of 4: equals one batch of 8
    assert (
        _train_deterministic(
            work, "accum", "iters:12", "checkpoint_interval:12", "batch_size:4", "accumulation:2"
        )
        == 0
    )
    # two processes with global batch 8 (4 each), DDP; then 2 x 2 micro-batches (no_sync path)
    assert run_distributed(
        _train_deterministic, 2, work, "ddp", "iters:12", "checkpoint_interval:12"
    ) == [0, 0]
    assert run_distributed(
        _train_deterministic,
        2,
        work,
        "ddp_accum",
        "iters:12",
        "checkpoint_interval:12",
        "batch_size:4",
        "accumulation:2",
    ) == [0, 0]
    # FSDP2, sharded checkpoint consolidated into one file
    assert run_distributed(
        _train_deterministic,
        2,
        work,
        "fsdp",
        "iters:12",
        "checkpoint_interval:12",
        "strategy::fsdp",
    ) == [0, 0]
    assert (
        consolidate_main(
            [str(tmp_path / "fsdp/checkpoints/iter_12"), str(tmp_path / "fsdp.safetensors")]
        )
        == 0
    )

    single = _weights(tmp_path, "single", 12)
    _close(_weights(tmp_path, "accum", 12), single)
    _close(_weights(tmp_path, "ddp", 12), single)
    _close(_weights(tmp_path, "ddp_accum", 12), single)
    _close(load_file(str(tmp_path / "fsdp.safetensors")), single, atol=1e-4)
    fsdp_losses = _losses(tmp_path, "fsdp")
    assert sum(fsdp_losses[-3:]) < 0.6 * sum(fsdp_losses[:3]), fsdp_losses


def test_autocast_trains_in_bf16_and_fp32_regions_stay_fp32(tmp_path: Path) -> None:
    assert (
        train_main(
            [
                "amp",
                str(CONFIG),
                "--work-dirs",
                str(tmp_path),
                "--autocast",
                "--config-options",
                "iters:4",
            ]
        )
        == 0
    )
    log = next((tmp_path / "amp" / "logs").glob("*.log")).read_text()
    assert "forward_bf16 1 " in log
    assert "loss_fp32 1 " in log
    assert "autocast on" in log

    @fp32
    def product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    a = torch.randn(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
        assert product(a.bfloat16(), a).dtype == torch.float32


@pytest.mark.distributed
@pytest.mark.slow
def test_fsdp_with_a_whole_revived_codebook_matches_ddp(tmp_path: Path) -> None:
    """CVQ-VAE revives its codebook in place: FSDP keeps that parameter whole on every rank
    (averaging its gradient by hook) while sharding the rest, and clipping norms the mix.

    One step: later steps amplify 1e-8 differences of reduction order through near-ties of
    the nearest-code search (revived codes are near copies of each other), so only the first
    step can be compared tightly.
    """
    demo = CONFIG.parents[4] / "configs" / "demo" / "cvqvae_photos.py"
    for strategy in ("ddp", "fsdp"):
        argv = [strategy, str(demo), "--work-dirs", str(tmp_path), "--config-options",
                "iters:1", "image_size:16", "batch_size:8", "--override",
                f".strategy.kind:'{strategy}'", ".loop.checkpoint_interval:1",
                ".optimization.clip_grad_norm:0.5"]  # fmt: skip
        assert run_distributed(train_main, 2, argv) == [0, 0]
    fsdp = tmp_path / "fsdp.safetensors"
    assert consolidate_main([str(tmp_path / "fsdp" / "checkpoints" / "iter_1"), str(fsdp)]) == 0
    ddp = load_file(str(tmp_path / "ddp/checkpoints/iter_1/models/model.safetensors"))
    sharded = load_file(str(fsdp))
    _close(sharded, ddp, atol=1e-6)
    # the revivals are in the checkpoint: one Adam step alone moves the uniform(+-1/512)
    # initial codes by 2e-3 per coordinate at most
    revived = sharded["quantizer.codebook"].norm(dim=1) > 0.05
    assert revived.float().mean() > 0.5
    log = next((tmp_path / "fsdp" / "logs").glob("*.log")).read_text()
    assert float(re.findall(r"g_grad_norm ([0-9.e+-]+)", log)[0]) > 0.5  # so it was clipped
