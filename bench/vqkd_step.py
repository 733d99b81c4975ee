"""VQ-KD training speed with the CLIP ViT-B/16 teacher: seconds per iteration in fp32 and
with ``--autocast``.

    uv run python bench/vqkd_step.py                                    # batch 1, CPU
    uv run python bench/vqkd_step.py --against fc5df97 --rounds 2       # ratios against a rev
    uv run python bench/vqkd_step.py --device cuda --batch-sizes 64 --compile

The trainer is the one of ``configs/vqkd/clip_8192_imagenet_ddp.py`` (ViT-B/16 encoder,
8192 x 32 cosine codebook, ViT feature decoder, cosine distillation of the teacher's 512-d
patch tokens) at 224 px. The teacher keeps random weights (``weights=None``): its cost
does not depend on the values, so nothing needs downloading, but it needs timm (the
``teachers`` extra). Images are 224 px crops of the embedded photos.

Per batch size: ``VQKDTrainer.step`` (teacher forward under no_grad, tokenizer forward,
backward, Adam step), median over ``--steps`` iterations after one warm-up, in fp32 and
under autocast (bf16 where the device has it); ``--compile`` adds both with ``--compile``'s
compiled models (this tree only). The last line is the worker's peak resident host memory.
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
from vq.train.data import PhotosConfig
from vq.train.trainers.vqkd import VQKDTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ when imported by path
import _against
import _steps

CONFIG = "configs/vqkd/clip_8192_imagenet_ddp.py"


def bench_config(batch_size: int) -> Any:
    config = load_config(_against.tree() / CONFIG, {})  # fc5df97's config took no batch option
    loader = {"batch_size": batch_size, "batch_size_is_global": True, "workers": 0}
    return config.model_copy(
        update={
            "loader": config.loader.model_copy(update=loader),
            "data": PhotosConfig(image_size=224, augmentation="default"),
            "teacher": config.teacher.model_copy(update={"weights": None}),
        }
    )


def step_seconds(batch_size: int, args: argparse.Namespace, work: Path, **mode: bool) -> float:
    """Median seconds of one VQ-KD training iteration."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    config = bench_config(batch_size)
    run = Run(config=config, work_dir=work, device=device, seed=0, **_steps.run_flags(**mode))
    trainer = VQKDTrainer(config, run)
    batch = _steps.device_batch(trainer.dataset, batch_size, device)
    iteration = iter(range(1, 10_000))
    return _steps.median_seconds(lambda: trainer.step(batch, next(iteration)), args.steps, device)


def measure(args: argparse.Namespace) -> _against.Metrics:
    out: _against.Metrics = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        for b in args.batch_sizes:
            for autocast in (False, True):
                tag = "autocast" if autocast else "fp32"
                out[f"vqkd b{b} {tag} s/iter"] = step_seconds(b, args, work, autocast=autocast)
                if args.compile and _steps.can_compile():
                    t = step_seconds(b, args, work, autocast=autocast, compile=True)
                    out[f"vqkd b{b} {tag}+compile s/iter"] = t
    out["peak host memory GiB"] = _against.peak_rss_bytes() / 2**30  # of all the steps above
    return out


def report(metrics: _against.Metrics) -> None:
    _steps.report_over_fp32(metrics, ("autocast", "fp32+compile", "autocast+compile"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _steps.add_arguments(parser)
    _against.add_arguments(parser)
    args = parser.parse_args()
    _steps.set_threads(args)
    print(f"VQ-KD clip_8192, 224 px, {args.device}, {torch.get_num_threads()} threads")
    _against.main(args, __file__, measure, report)


if __name__ == "__main__":
    main()
