"""VQGAN 8192_dd2 training and inference speed: seconds per full training iteration
(generator + discriminator step) in fp32 and with ``--autocast`` (optionally
``--channels-last`` and ``--compile``), and encode / decode images/s of its tokenizer.

    uv run python bench/train_step.py                                   # batch 1, CPU
    uv run python bench/train_step.py --against fc5df97 --rounds 3      # ratios against a rev
    uv run python bench/train_step.py --device cuda --batch-sizes 8 --compile

The trainer is the one of ``configs/vqgan/8192_dd2_aglwg075_imagenet_ddp.py`` (taming f16,
8192 x 256 codes, PatchGAN depth 2, L1 + LPIPS + adaptive hinge GAN), at 256 px, with the
discriminator on from the first iteration. LPIPS gets random VGG16 / lin weights written to a
temporary folder (the cost does not depend on the values), and the images are 256 px crops
of the embedded photos, so nothing needs downloading.

Per batch size: ``VQGANTrainer.step`` (one autoencoder forward, generator backward and Adam
step, discriminator step), median over ``--steps`` iterations after one warm-up, in fp32
and under autocast (bf16 where the device has it); ``--channels-last`` adds both steps with
``train --channels-last`` (the autoencoder, the discriminator and the LPIPS trunk in
channels_last; a tree without the flag has the bench convert them and the inputs);
``--compile`` the step with ``--compile``'s compiled models (this tree only). Encode and
decode run under ``no_grad`` in eval mode (``--coding-only``: nothing else). The last
line is the worker's peak resident host memory over all of it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from vq.core.configfile import load_config
from vq.core.loop import Run
from vq.core.parallel import unwrap
from vq.tokenizers.losses.vgg16 import TAP_CHANNELS, VGG16Features
from vq.train.data import PhotosConfig
from vq.train.trainers.vqgan import VQGANTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ when imported by path
import _against
import _steps

CONFIG = "configs/vqgan/8192_dd2_aglwg075_imagenet_ddp.py"


def random_lpips_files(folder: Path) -> dict[str, Path]:
    trunk = VGG16Features()
    for name, buffer in trunk.named_buffers():
        if name.endswith("weight"):
            torch.nn.init.kaiming_normal_(buffer, mode="fan_out", nonlinearity="relu")
        else:
            buffer.zero_()
    torch.save(dict(trunk.named_buffers()), folder / "vgg16.pth")
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(TAP_CHANNELS)}
    torch.save(heads, folder / "vgg_lin.pth")
    return {"vgg_path": folder / "vgg16.pth", "lin_path": folder / "vgg_lin.pth"}


def bench_config(lpips_files: dict[str, Path], batch_size: int) -> Any:
    config = load_config(_against.tree() / CONFIG, {"batch_size": batch_size, "workers": 0})
    rec = config.reconstruction
    return config.model_copy(
        update={
            "data": PhotosConfig(image_size=256, augmentation="strong"),
            "reconstruction": rec.model_copy(
                update={"lpips": rec.lpips.model_copy(update=lpips_files)}
            ),
        }
    )


def channels_last(trainer: Any) -> None:
    """The autoencoder, the discriminator and the LPIPS trunk in channels_last, done here
    for a tree whose ``train`` has no ``--channels-last`` (this tree uses the flag)."""
    modules = [unwrap(trainer.model)]
    for owner in (trainer, getattr(trainer, "gan", None)):
        for name in ("discriminator", "reconstruction_loss"):
            if owner is not None and hasattr(owner, name):
                modules.append(unwrap(getattr(owner, name)))
    for module in modules:
        module.to(memory_format=torch.channels_last)


def step_seconds(
    files: dict[str, Path], batch_size: int, args: argparse.Namespace, work: Path, **mode: bool
) -> tuple[float, Any, dict[str, Any]]:
    """Median seconds of a full training iteration; also the trainer and its batch."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    config = bench_config(files, batch_size)
    run_flags = _steps.run_flags(**mode)
    has_flag = "channels_last" in Run.__dataclass_fields__  # train --channels-last
    if mode.get("channels_last") and has_flag:
        run_flags["channels_last"] = True
    run = Run(config=config, work_dir=work, device=device, seed=0, **run_flags)
    trainer = VQGANTrainer(config, run)
    batch = _steps.device_batch(trainer.dataset, batch_size, device)
    if mode.get("channels_last") and not has_flag:  # a tree without the flag
        channels_last(trainer)
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    if mode.get("untimed"):
        return float("nan"), trainer, batch
    iteration = iter(range(1, 10_000))
    step = _steps.median_seconds(lambda: trainer.step(batch, next(iteration)), args.steps, device)
    return step, trainer, batch


@torch.no_grad()
def coding_seconds(
    tokenizer: torch.nn.Module, image: torch.Tensor, steps: int, device: torch.device
) -> tuple[float, float]:
    """Median seconds to encode ``image`` (B, 3, 256, 256) and to decode its codes."""
    tokenizer.eval()
    codes = tokenizer.encode(image)  # (B, 16, 16)
    encode = _steps.median_seconds(lambda: tokenizer.encode(image), steps, device)
    return encode, _steps.median_seconds(lambda: tokenizer.decode(codes), steps, device)


def measure(args: argparse.Namespace) -> _against.Metrics:
    out: _against.Metrics = {}
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        files = random_lpips_files(Path(tmp))
        for b in args.batch_sizes:
            work = Path(tmp) / "work"
            step, trainer, batch = step_seconds(files, b, args, work, untimed=args.coding_only)
            enc, dec = coding_seconds(unwrap(trainer.model), batch["image"], args.steps, device)
            out[f"encode b{b} fp32 images/s"] = b / enc
            out[f"decode b{b} fp32 images/s"] = b / dec
            del trainer
            if args.coding_only:
                continue
            out[f"vqgan b{b} fp32 s/iter"] = step
            out[f"vqgan b{b} autocast s/iter"] = step_seconds(files, b, args, work, autocast=True)[
                0
            ]
            if args.channels_last:
                cl = step_seconds(files, b, args, work, channels_last=True)[0]
                out[f"vqgan b{b} fp32 channels_last s/iter"] = cl
                cl = step_seconds(files, b, args, work, channels_last=True, autocast=True)[0]
                out[f"vqgan b{b} autocast channels_last s/iter"] = cl
            if args.compile and _steps.can_compile():
                for autocast in (False, True):
                    tag = "autocast" if autocast else "fp32"
                    t = step_seconds(files, b, args, work, autocast=autocast, compile=True)[0]
                    out[f"vqgan b{b} {tag}+compile s/iter"] = t
    out["peak host memory GiB"] = _against.peak_rss_bytes() / 2**30  # of all the modes above
    return out


def report(metrics: _against.Metrics) -> None:
    others = ("autocast", "fp32 channels_last", "autocast channels_last")
    _steps.report_over_fp32(metrics, (*others, "fp32+compile", "autocast+compile"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _steps.add_arguments(parser)
    parser.add_argument("--channels-last", action="store_true", help="also time channels_last")
    parser.add_argument(
        "--coding-only", action="store_true", help="time encode/decode only, no iterations"
    )
    _against.add_arguments(parser)
    args = parser.parse_args()
    _steps.set_threads(args)
    print(f"VQGAN 8192_dd2_aglwg075, 256 px, {args.device}, {torch.get_num_threads()} threads")
    _against.main(args, __file__, measure, report)


if __name__ == "__main__":
    main()
