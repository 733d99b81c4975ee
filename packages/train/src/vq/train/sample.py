"""``sample NAME CONFIG --load-model-from CKPT``: images from a trained proposal network.

    uv run sample ar/c2i_llama_medium_cfg \\
        work_dirs/ar/c2i_llama_medium_cfg/c2i_llama_medium_cfg_imagenet_ddp.py \\
        --load-model-from work_dirs/ar/c2i_llama_medium_cfg/checkpoints/latest \\
        --per-class 50 --batch-size 125 --autocast

CONFIG is the AR or NAR run's config: its resolved copy in the run's work dir, or the
original file with the same ``--config-options``. It names the frozen tokenizer that decodes
the tokens and the sampling defaults (guidance, temperature, top-k, top-p; a NAR run's
decoding steps and choice temperature too), which the flags override.

Classes: ``--classes 3 7`` lists them, ``--num-classes K`` takes 0..K-1 (default: all classes
of the config); each gets ``--per-class N`` images (default 1).

Precision and speed: ``--dtype`` stores the network's weights (and its KV cache) in fp32,
bf16 or fp16 (a decoding step reads every weight once); logits, guidance and the draw stay
fp32. ``--tokenizer-dtype`` does the same for the decoding tokenizer. ``--compile`` compiles
the AR one-token step over the static cache, or the NAR network (``vq.core.compiling``).

Products, under ``WORK_DIRS/NAME/``:

* ``samples/<class>_<i>.png``: one PNG per image, ``i`` counting the images of that class;
* ``samples.npz``: ``arr_0`` uint8 (N, H, W, 3) images and ``arr_1`` int64 (N,) labels, in
  the order of the requested classes; the layout of ADM's ``evaluator.py`` reference batches,
  so external FID/IS/precision/recall evaluators read it directly.

Reproducibility: images are drawn in batches of ``--batch-size`` consecutive requests, and
batch ``b`` uses its own generator seeded from ``(--seed, b)``. The images therefore depend on
the seed, the request list and the batch size, not on the number of processes.

Processes: under torchrun (or with ``--nproc N``) rank ``r`` draws batches r, r + N, ...
and writes their PNGs; rank 0 then gathers the npz from the PNGs (lossless), so the ranks
must share the work dir's file system (one node, or a shared disk).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import torch
from PIL import Image

from vq.core import amp, distributed, launch
from vq.core.compiling import check_compile
from vq.core.configfile import describe_validation_error
from vq.core.errors import EXIT_USER_ERROR, UserError
from vq.core.logging import LOGGER, progress, save_png, setup_logging
from vq.core.seeding import seeded_generator
from vq.core.tensorfiles import load_weights
from vq.train.cli import WORK_DIRS_ENV, resolve_config, work_dir_of
from vq.train.data import to_uint8
from vq.train.evaluation.proposal_kinds import is_proposal_run, proposal_kind
from vq.train.proposal import ProposalRunConfig, SamplingConfig, token_space
from vq.train.tokenizer_source import load_frozen_tokenizer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sample",
        description="Generate images with a trained class-to-image proposal network.",
        epilog=f"Work dirs go under $${WORK_DIRS_ENV} or ./work_dirs unless --work-dirs is given.",
    )
    parser.add_argument("name", help="run name; samples go to WORK_DIRS/NAME/samples")
    parser.add_argument("config", type=Path, help="the AR or NAR run's config file")
    parser.add_argument(
        "--load-model-from",
        nargs="+",
        type=Path,
        required=True,
        metavar="F",
        help="network weights: a checkpoint dir (e.g. .../checkpoints/latest) or a "
        ".safetensors/.pt file; later files win",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--classes", nargs="+", type=int, metavar="C", help="classes to sample")
    which.add_argument(
        "--num-classes", type=int, metavar="K", help="sample classes 0..K-1 (default: all)"
    )
    parser.add_argument("--per-class", type=int, default=1, metavar="N", help="images per class")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (1: off)")
    parser.add_argument("--temperature", type=float, help="softmax temperature (0: greedy)")
    parser.add_argument("--top-k", type=int, help="keep the k most likely tokens (0: off)")
    parser.add_argument("--top-p", type=float, help="nucleus mass to keep (1: off)")
    parser.add_argument("--num-steps", type=int, help="decoding steps (NAR runs)")
    parser.add_argument(
        "--choice-temperature", type=float, help="Gumbel noise on the cell order (NAR runs)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward batch")
    parser.add_argument(
        "--autocast", action="store_true", help="run the network and decoder in bf16"
    )
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="fp32",
        help="dtype the network's weights are stored and run in (decoding is bound by "
        "reading them); logits, guidance and sampling stay fp32 (default fp32)",
    )
    parser.add_argument(
        "--tokenizer-dtype",
        choices=sorted(DTYPES),
        default="fp32",
        help="dtype of the tokenizer/pixel decoder's weights (default fp32)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the one-token decoding step over the static KV cache (AR) or "
        "the network (NAR); CUDA graphs on CUDA",
    )
    parser.add_argument(
        "--config-options",
        nargs="*",
        default=[],
        metavar="K:V",
        help="keyword arguments of the config (k:v literal, k::v raw string)",
    )
    parser.add_argument(
        "--override", nargs="*", default=[], metavar="PATH:V", help="set config fields by path"
    )
    parser.add_argument(
        "--nproc", type=int, default=None, help="processes to start outside torchrun (default 1)"
    )
    parser.add_argument(
        "--work-dirs", type=Path, default=None, help=f"root of work dirs (env {WORK_DIRS_ENV})"
    )
    return parser


# ------------------------------------------------------------------ planning --------


def requests(args: argparse.Namespace, num_classes: int) -> list[tuple[int, int]]:
    """``(class, i)`` for every image to draw, ``i`` counting per class, in request order."""
    if args.per_class < 1:
        raise UserError(f"--per-class must be at least 1, got {args.per_class}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.classes is not None:
        classes = args.classes
    else:
        count = num_classes if args.num_classes is None else args.num_classes
        if not 1 <= count <= num_classes:
            raise UserError(f"--num-classes must be in [1, {num_classes}], got {count}")
        classes = list(range(count))
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise UserError(f"--classes {bad}: the model knows classes 0..{num_classes - 1}")
    seen: Counter[int] = Counter()
    out = []
    for c in classes:
        for _ in range(args.per_class):
            out.append((c, seen[c]))
            seen[c] += 1
    return out


def sampling_of(args: argparse.Namespace, config: ProposalRunConfig) -> SamplingConfig:
    """The config's sampling settings with the command-line flags applied."""
    flags: dict[str, Any] = {}
    if args.guidance is not None:
        flags["guidance_scale"] = args.guidance
    if args.temperature is not None:
        flags["temperature"] = args.temperature
    if args.top_k is not None:
        flags["top_k"] = args.top_k or None
    if args.top_p is not None:
        flags["top_p"] = None if args.top_p == 1.0 else args.top_p
    if args.num_steps is not None:
        flags["num_steps"] = args.num_steps
    if args.choice_temperature is not None:
        flags["choice_temperature"] = args.choice_temperature
    try:
        kind = type(config.sampling)  # the NAR config's adds the decoding steps
        sampling = kind.model_validate({**config.sampling.model_dump(), **flags})
    except pydantic.ValidationError as e:
        raise UserError(f"sampling flags: {describe_validation_error(e)}") from None
    if sampling.guidance_scale != 1.0 and not config.can_guide:
        raise UserError(
            f"--guidance {sampling.guidance_scale}: the network of {args.config} was trained "
            "without a null class; guidance needs a *_cfg model (or --guidance 1)"
        )
    return sampling


def prepare(args: argparse.Namespace) -> tuple[ProposalRunConfig, SamplingConfig, list]:
    """Everything that can be checked before starting processes or loading weights."""
    config = resolve_config(args.config, args.config_options, args.override)
    if args.compile:
        check_compile()
    if not is_proposal_run(config):
        raise UserError(f"{args.config} is a {config.trainer!r} run, not an AR or NAR run")
    if config.tokenizer is None:
        raise UserError(
            f"{args.config} names no tokenizer to decode samples with; pass ir_config and "
            "ir_state_dict in --config-options"
        )
    for path in args.load_model_from:
        if not path.exists():
            raise UserError(f"--load-model-from {path}: no such file or checkpoint directory")
        if path.is_dir() and (path / "dcp").is_dir():
            raise UserError(
                f"{path} is a sharded (FSDP) checkpoint; run `consolidate {path} "
                "model.safetensors` and pass that file"
            )
    return config, sampling_of(args, config), requests(args, config.num_classes)


# ------------------------------------------------------------------ sampling --------


def run_sample(args: argparse.Namespace) -> int:
    config, sampling, todo = prepare(args)
    device = launch.init_process_group()
    bar: Any = None
    try:
        work_dir = work_dir_of(args.name, args.work_dirs)
        out = work_dir / "samples"
        if distributed.is_main():
            out.mkdir(parents=True, exist_ok=True)
        distributed.barrier()
        setup_logging(work_dir if distributed.is_main() else None)

        assert config.tokenizer is not None
        tokenizer = load_frozen_tokenizer(config.tokenizer.config, config.tokenizer.state_dicts)
        tokenizer.to(device, DTYPES[args.tokenizer_dtype])
        space = token_space(config, tokenizer)
        kind = proposal_kind(config, args.compile)  # NAR: compiles the network in place
        network = kind.build(config, space, device)
        report = load_weights(network, args.load_model_from)
        if report.missing or report.mismatched:
            raise UserError(
                f"{' '.join(map(str, args.load_model_from))} does not fit the network of "
                f"{args.config}: {report.summary()}"
            )
        network.to(device, DTYPES[args.dtype]).eval()
        amp.warn_if_slow(device, DTYPES[args.dtype], "--dtype")
        amp.warn_if_slow(device, DTYPES[args.tokenizer_dtype], "--tokenizer-dtype")
        amp.warn_if_autocast_slow(device, args.autocast)
        LOGGER.info(
            "sampling %d images of %d classes (%s) on %d process(es)",
            len(todo),
            len({c for c, _ in todo}),
            sampling,
            distributed.world_size(),
        )

        batches = [todo[i : i + args.batch_size] for i in range(0, len(todo), args.batch_size)]
        mine = range(distributed.rank(), len(batches), distributed.world_size())
        bar = progress(sum(len(batches[b]) for b in mine), desc="sample", unit="img")
        for b in mine:
            classes = torch.tensor([c for c, _ in batches[b]], device=device)
            with amp.autocast(device, args.autocast):
                generator = seeded_generator(device, args.seed, b)
                tokens = kind.draw(network, config, space, classes, sampling, generator)
                images = tokenizer.decode(tokens).float()  # (B, 3, H, W)
            pixels = to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)
            for (c, i), image in zip(batches[b], pixels):
                save_png(image, out / f"{c}_{i}.png")
            bar.update(len(batches[b]))

        distributed.barrier()
        if distributed.is_main():
            path = write_npz(work_dir / "samples.npz", out, todo)
            LOGGER.info("wrote %d images to %s and %s", len(todo), out, path)
        distributed.barrier()
    finally:
        if bar is not None:
            bar.close()
        launch.destroy_process_group()
    return 0


def write_npz(path: Path, folder: Path, todo: list[tuple[int, int]]) -> Path:
    """Gather the PNGs of ``todo`` into ``arr_0`` (N, H, W, 3) uint8 and ``arr_1`` labels."""
    first = np.asarray(Image.open(folder / f"{todo[0][0]}_{todo[0][1]}.png"))
    images = np.empty((len(todo), *first.shape), dtype=np.uint8)  # (N, H, W, 3)
    for n, (c, i) in enumerate(todo):
        with Image.open(folder / f"{c}_{i}.png") as image:
            images[n] = np.asarray(image.convert("RGB"))
    labels = np.array([c for c, _ in todo], dtype=np.int64)  # (N,)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        np.savez(f, arr_0=images, arr_1=labels)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ entry -----------


def sample_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        nproc = args.nproc or 1
        if nproc > 1 and not launch.under_torchrun():
            prepare(args)  # a bad flag fails once, before starting processes
            return launch.relaunch(nproc, "vq.train.sample", argv)
        return launch.run_here(lambda: run_sample(args))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


def main() -> None:
    launch.exit_command(sample_main())


if __name__ == "__main__":
    main()
