"""``train --channels-last``: the convolutional models and the LPIPS trunk train in
channels_last, like the contiguous run up to float rounding, resume bit-identically and
write the same (contiguous) checkpoints; a strategy it cannot serve is refused up front."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vq.core.loop import Run
from vq.core.parallel import unwrap
from vq.train.cli import train_main
from vq.train.data import collate
from vq.train.trainers.vqgan import VQGANTrainer

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import CONFIG as TOY
from test_resume import _assert_identical
from test_vqgan_trainer import DEMO, _tiny, _with_lpips

CHANNELS_LAST = torch.channels_last


def _conv_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every 4-d parameter and buffer (convolution kernels) of ``module``."""
    tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    return {name: t for name, t in tensors.items() if t.ndim == 4}


def _layout(checkpoint: Path, name: str) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """Key, shape and dtype of each tensor of a checkpoint's ``name`` weights file."""
    tensors = load_file(str(checkpoint / "models" / f"{name}.safetensors"))
    return {key: (t.shape, t.dtype) for key, t in tensors.items()}


def _trainer(config, tmp_path: Path, channels_last: bool) -> VQGANTrainer:
    torch.manual_seed(0)  # the same initial weights for both layouts
    run = Run(
        config=config, work_dir=tmp_path, device=torch.device("cpu"), seed=0,
        channels_last=channels_last,
    )  # fmt: skip
    return VQGANTrainer(config, run)


def test_models_and_lpips_trunk_train_in_channels_last_like_contiguous(
    lpips_files, tmp_path: Path
) -> None:
    config = _with_lpips(_tiny(discriminator_start=0), lpips_files)
    plain, fast = (_trainer(config, tmp_path / str(cl), cl) for cl in (False, True))
    parts = {
        "model": lambda t: unwrap(t.model),
        "discriminator": lambda t: unwrap(t.gan.discriminator),
        "lpips": lambda t: t.gan.reconstruction_loss,
    }
    for name, part in parts.items():
        kernels = _conv_weights(part(fast))
        assert kernels, f"{name} has no convolutions"
        for key, tensor in kernels.items():
            assert tensor.is_contiguous(memory_format=CHANNELS_LAST), f"{name}.{key}"
        for key, tensor in _conv_weights(part(plain)).items():
            assert tensor.is_contiguous(), f"{name}.{key}: the default layout is unchanged"
    batch = collate([plain.dataset[i] for i in range(4)])
    for iteration in (1, 2, 3):  # later steps see the updates and Adam state of earlier ones
        a, b = plain.step(batch, iteration), fast.step(batch, iteration)
        assert a.keys() == b.keys()
        for key in a:
            expected, got = torch.as_tensor(a[key]), torch.as_tensor(b[key])
            assert torch.allclose(expected, got, rtol=1e-3, atol=1e-4), (iteration, key)


@pytest.mark.slow
def test_resume_with_channels_last_is_bit_identical(tmp_path: Path, lpips_files) -> None:
    base = [str(DEMO), "--work-dirs", str(tmp_path), "--channels-last", "--override",
            f".reconstruction.lpips.vgg_path::{lpips_files['vgg_path']}",
            f".reconstruction.lpips.lin_path::{lpips_files['lin_path']}",
            ".loop.checkpoint_interval:2",
            ".optimization.schedule.total_iters:4",  # one cosine for both legs
            "--config-options", "image_size:16", "batch_size:4",
            "num_codes:64", "discriminator_start:1", "lpips:1.0"]  # fmt: skip
    assert train_main(["straight", *base, "iters:4"]) == 0
    assert train_main(["resumed", *base, "iters:2"]) == 0
    assert train_main(["resumed", *base, "iters:4", "--auto-resume"]) == 0
    log = "".join(p.read_text() for p in (tmp_path / "resumed" / "logs").glob("*.log"))
    assert "resumed from" in log and "channels_last on" in log
    straight, resumed = (
        tmp_path / run / "checkpoints" / "iter_4" for run in ("straight", "resumed")
    )
    _assert_identical(straight, resumed)  # weights, Adam state, schedule, RNG
    # the files a channels_last run writes have the keys, shapes and dtypes of a default run's
    assert train_main(["contiguous", *[a for a in base if a != "--channels-last"], "iters:4"]) == 0
    contiguous = tmp_path / "contiguous" / "checkpoints" / "iter_4"
    for name in ("model", "discriminator"):
        assert _layout(straight, name) == _layout(contiguous, name), name


def test_channels_last_with_fsdp_is_refused_before_anything_is_written(
    tmp_path: Path, capsys
) -> None:
    argv = ["run", str(TOY), "--work-dirs", str(tmp_path), "--channels-last",
            "--config-options", "strategy::fsdp"]  # fmt: skip
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --channels-last needs strategy ddp (this config uses fsdp: its "
                   "flat parameter shards keep one layout)"]  # fmt: skip
    assert list(tmp_path.iterdir()) == []
