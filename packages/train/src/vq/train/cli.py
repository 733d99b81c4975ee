"""``train NAME CONFIG [options]``: the command users of the reference already know.

    uv run train vqgan/8192_dd2_aglwg075_imagenet_ddp configs/vqgan/8192_dd2_aglwg075_imagenet_ddp.py \\
        --config-options iters:1000 --override .loader.batch_size:32 --autocast --auto-resume

Outside torchrun it starts one process per visible GPU (one on CPU, ``--nproc N`` forces N);
under torchrun it joins the process group. Products go to ``work_dirs/NAME/``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from vq.core import amp, distributed, launch, runlock
from vq.core.checkpoint import CheckpointError, consolidate
from vq.core.compiling import check_compile
from vq.core.config import Config
from vq.core.configfile import apply_overrides, dump_config, load_config, parse_assignments
from vq.core.errors import EXIT_USER_ERROR, UserError
from vq.core.logging import LOGGER, setup_logging
from vq.core.loop import (
    NonFiniteLossError,
    Run,
    RunConfig,
    check_launch,
    resolve_resume,
    train,
)
from vq.core.registry import TRAINERS
from vq.core.seeding import rank_seed, seed_everything

DEFAULT_SEED = 3407
WORK_DIRS_ENV = "VQ_WORK_DIRS"

# The reference needed this override whenever --load-model-from met a resume. vq loads
# --load-model-from first and the checkpoint second (it wins for what it holds; frozen parts
# are never in it), so the override has nothing left to do: accepted and ignored.
LEGACY_OVERRIDES = {".trainer.callbacks[-1].load_state_dict"}


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", type=Path, help="config file, e.g. configs/vqgan/8192_imagenet_ddp.py"
    )
    parser.add_argument(
        "--config-options",
        nargs="*",
        default=[],
        metavar="K:V",
        help="keyword arguments of the config: k:v for a Python literal "
        "(numbers, tuples, dict(a=1), None, True), k::v for a raw string",
    )
    parser.add_argument(
        "--override",
        nargs="*",
        default=[],
        metavar="PATH:V",
        help="set a field of the built config by path, e.g. .loop.iters:1000, "
        ".model.quantizer.num_codes:1024, .data.root::/datasets/imagenet",
    )
    parser.add_argument(
        "--autocast",
        action="store_true",
        help="run forward passes in bf16 (fp16 + grad scaler where bf16 is missing); "
        "quantizer distances, codebook updates and losses stay fp32",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the forward of every model (not the loop); needs a C++ compiler "
        "on CPU, triton on CUDA",
    )


def build_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train",
        description="Train a tokenizer, pixel decoder or proposal network.",
        epilog=f"Work dirs go under $${WORK_DIRS_ENV} or ./work_dirs unless --work-dirs is given.",
    )
    parser.add_argument("name", help="run name; products go to WORK_DIRS/NAME (may contain '/')")
    _add_config_arguments(parser)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="run seed (default 3407)")
    parser.add_argument(
        "--load-model-from",
        nargs="+",
        type=Path,
        default=[],
        metavar="F",
        help="weights to load before training (.safetensors, .pt/.pth state dicts or checkpoint "
        "dirs); later files win; combined with a resume, the checkpoint wins for what it holds",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="store the 4-d weights of the models and the LPIPS trunk in channels_last "
        "(faster convolutions on CPU and GPU; DDP or one process); resume with the same flag "
        "for bit-identical results",
    )
    parser.add_argument(
        "--load-from", type=Path, default=None, metavar="DIR", help="resume from checkpoint DIR"
    )
    parser.add_argument(
        "--auto-resume",
        action="store_true",
        help="resume from WORK_DIR/checkpoints/latest if it exists (takes priority over --load-from)",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="processes to start outside torchrun (default: one per visible GPU, one on CPU)",
    )
    parser.add_argument(
        "--work-dirs", type=Path, default=None, help=f"root of work dirs (env {WORK_DIRS_ENV})"
    )
    return parser


def resolve_config(path: Path, options: list[str], overrides: list[str]) -> RunConfig:
    """Load CONFIG with its options, apply overrides, check the trainer exists."""
    config = load_config(path, parse_assignments(options))
    parsed = parse_assignments(overrides)
    for legacy in LEGACY_OVERRIDES & parsed.keys():
        LOGGER.info("override %s is not needed in vq and is ignored", legacy)
        del parsed[legacy]
    config = apply_overrides(config, parsed)
    if not isinstance(config, RunConfig):
        raise UserError(f"config {path} does not describe a training run")
    TRAINERS.get(config.trainer)
    return config


def work_dir_of(name: str, root: Path | None) -> Path:
    if not name or name.startswith("/") or ".." in Path(name).parts:
        raise UserError(f"run name {name!r} must be a relative path without '..'")
    return (root or Path(os.environ.get(WORK_DIRS_ENV, "work_dirs"))) / name


def write_resolved_config(config: Config, work_dir: Path, source: Path, header: str) -> Path:
    target = work_dir / source.name
    tmp = target.with_suffix(".py.tmp")
    tmp.write_text(dump_config(config, header))
    tmp.replace(target)
    return target


def claim_run(
    config: RunConfig,
    work_dir: Path,
    resume_from: Path | None,
    load_model_from: list[Path],
    stack: contextlib.ExitStack,
) -> None:
    """Check everything that can refuse the launch, then take the run's lock: on rank 0,
    before anything is written to ``work_dir``, with its verdict raised on every rank."""
    problem = None
    if distributed.is_main():
        try:
            check_launch(config, work_dir, resume_from, load_model_from)
            work_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(runlock.hold(work_dir))
        except UserError as error:
            problem = str(error)
    problem = distributed.all_gather_objects(problem)[0]  # rank 0's verdict, on every rank
    if problem is not None:
        raise UserError(problem)


def check_flags(args: argparse.Namespace, config: RunConfig) -> None:
    """The flags that a config or this machine can refuse, before anything is written."""
    if args.compile:
        check_compile()
    if args.channels_last and config.strategy.kind != "ddp":
        raise UserError(
            f"--channels-last needs strategy ddp (this config uses {config.strategy.kind}: "
            "its flat parameter shards keep one layout)"
        )


def run_train(args: argparse.Namespace, argv: list[str]) -> int:
    config = resolve_config(args.config, args.config_options, args.override)
    check_flags(args, config)
    device = launch.init_process_group()
    with contextlib.ExitStack() as stack:
        stack.callback(launch.destroy_process_group)
        work_dir = work_dir_of(args.name, args.work_dirs)
        command = shlex.join(["train", *argv])
        resume_from = resolve_resume(work_dir, args.load_from, args.auto_resume)
        claim_run(config, work_dir, resume_from, list(args.load_model_from), stack)
        if distributed.is_main():
            write_resolved_config(config, work_dir, args.config, f"command: {command}")
        distributed.barrier()
        header = f"command\n{command}\nresolved config ({args.config})\n{config.model_dump_json(indent=2)}"
        setup_logging(work_dir, header)
        LOGGER.info(
            "run %s: %d process(es) on %s, autocast %s, compile %s, channels_last %s",
            args.name,
            distributed.world_size(),
            device,
            *(
                "on" if flag else "off"
                for flag in (args.autocast, args.compile, args.channels_last)
            ),
        )
        amp.warn_if_autocast_slow(device, args.autocast)
        seed_everything(rank_seed(args.seed, distributed.rank()))
        run = Run(
            config=config,
            work_dir=work_dir,
            device=device,
            seed=args.seed,
            autocast_enabled=args.autocast,
            compile_enabled=args.compile,
            channels_last=args.channels_last,
            load_model_from=list(args.load_model_from),
            resume_from=resume_from,
        )
        trainer = TRAINERS.get(config.trainer)(config, run)
        train(run, trainer)
        LOGGER.info("done: %s", work_dir)
    return 0


def _guarded(function: Any, *args: Any) -> int:
    try:
        return function(*args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (NonFiniteLossError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def train_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_train_parser().parse_args(argv)
    return launch.run_or_relaunch(
        args.nproc,
        "vq.train",
        argv,
        run=lambda: _guarded(run_train, args, argv),
        validate=lambda: _guarded(_validate_only, args),
    )


def _validate_only(args: argparse.Namespace) -> int:
    config = resolve_config(args.config, args.config_options, args.override)
    check_flags(args, config)
    work_dir = work_dir_of(args.name, args.work_dirs)
    resume_from = resolve_resume(work_dir, args.load_from, args.auto_resume)
    check_launch(config, work_dir, resume_from, list(args.load_model_from))
    return 0


def main() -> None:
    launch.exit_command(train_main())


def consolidate_main(argv: list[str] | None = None) -> int:
    """``consolidate CHECKPOINT OUT.safetensors``: one file from a sharded FSDP checkpoint."""
    parser = argparse.ArgumentParser(
        prog="consolidate",
        description="Write the weights of one model of a checkpoint (FSDP-sharded or not) "
        "into a single safetensors file, usable with --load-model-from.",
    )
    parser.add_argument("checkpoint", type=Path, help="e.g. work_dirs/NAME/checkpoints/iter_N")
    parser.add_argument("out", type=Path, help="output .safetensors file")
    parser.add_argument("--model", default="model", help="which tracked model (default: model)")
    args = parser.parse_args(argv)

    def run() -> int:
        n = consolidate(args.checkpoint, args.out, args.model)
        print(f"wrote {n} tensors of {args.model!r} to {args.out}")
        return 0

    return _guarded(run)


def consolidate_entry() -> None:
    sys.exit(consolidate_main())
