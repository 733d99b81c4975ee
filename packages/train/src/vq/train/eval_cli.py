"""``val`` and ``test``: evaluating tokenizer and AR runs.

    uv run val vqgan/8192 configs/vqgan/8192_dd2_aglwg075_imagenet_ddp.py --watch
    uv run val vqgan/8192 CONFIG --load-from iter_250000 iter_260000 --visual reconstruction
    uv run test vqgan/8192 CONFIG --load-model-from work_dirs/vqgan/8192/checkpoints/latest

``fid`` lives in ``vq.train.fid_command``; ``command_main("fid", ...)`` and
``python -m vq.train.eval_cli fid ...`` still reach it.

``val NAME CONFIG`` validates every complete checkpoint of ``work_dirs/NAME/checkpoints``
once, oldest first, into ``work_dirs/NAME/val/iter_N/metrics.json`` (plus TensorBoard
scalars ``val/<metric>`` at step N in the run's ``tensorboard/``); checkpoints that already
have a metrics.json are skipped, so running it again only does the new ones. ``--load-from``
restricts it to the named checkpoints. ``--watch`` follows a live run: it polls every
``--poll-seconds`` and exits once the final checkpoint (``loop.iters``, or every named one)
is validated. The reference instead polled forever.

``test NAME CONFIG --load-model-from F ...`` evaluates the given weights once into
``work_dirs/NAME_test/metrics.json``; ``--ten-crop`` also writes LlamaGen's ten-crop codes
of the train split.

Both take ``--load-model-from`` files that are loaded before a checkpoint's own weights (the
checkpoint wins): the frozen parts a checkpoint leaves out, e.g. the tokenizer under a
pixel decoder. Outside torchrun, ``--nproc N`` starts N processes (default: one per GPU).

A tokenizer run (``vq.train.tokenizer_run``) is measured by
``vq.train.evaluation.tokenizer_pass``: reconstruction, rFID, codebook. An AR run by
``vq.train.evaluation.generator_pass``: loss, token accuracy, and gFID
of one image per val image generated from its class, without guidance and at every
``--guidance`` scale (default: the config's); ``--seed`` fixes those images.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from vq.core import amp, distributed, launch
from vq.core.checkpoint import complete_checkpoints, consolidate, iteration_of
from vq.core.compiling import check_compile
from vq.core.errors import UserError
from vq.core.logging import LOGGER, TensorBoard, setup_logging
from vq.train.cli import (
    WORK_DIRS_ENV,
    _add_config_arguments,
    _guarded,
    resolve_config,
    work_dir_of,
    write_resolved_config,
)
from vq.train.evaluation.common import (
    EvalSettings,
    checkpoint_meta,
    config_weights,
    frozen_prefixes,
    load_evaluated_weights,
)
from vq.train.evaluation.generator_pass import GeneratorEvaluator
from vq.train.evaluation.probe_pass import ProbeEvaluator
from vq.train.evaluation.proposal_kinds import is_proposal_run
from vq.train.evaluation.ten_crop import TEN_CROP_TOKENS_FILE, tokenize_ten_crop
from vq.train.evaluation.tokenizer_pass import TokenizerEvaluator
from vq.train.fid_command import add_inception_argument
from vq.train.fid_command import main as fid_command_main
from vq.train.trainers.probe import ProbeRunConfig

# ------------------------------------------------------------------ parsers ---------


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_inception_argument(parser)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per process and batch (default: the config's loader)",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="processes to start outside torchrun (default: one per GPU, one on CPU)",
    )


def _add_evaluation(parser: argparse.ArgumentParser, weights_required: bool) -> None:
    parser.add_argument("name", help="run name: WORK_DIRS/NAME")
    _add_config_arguments(parser)
    parser.add_argument(
        "--load-model-from",
        nargs="+",
        type=Path,
        default=[],
        required=weights_required,
        metavar="F",
        help="weights (.safetensors, .pt/.pth or checkpoint dirs), later files win"
        + ("" if weights_required else "; loaded before each checkpoint's own weights"),
    )
    parser.add_argument(
        "--visual",
        metavar="REGEX",
        default=None,
        help="save per-sample PNGs of the keys (image, reconstruction) that fully match REGEX",
    )
    parser.add_argument(
        "--tokenize",
        action="store_true",
        help="write the val split's tokens as a token file (AR trainer format)",
    )
    parser.add_argument(
        "--require-fid",
        action="store_true",
        help="fail instead of skipping FID/IS when the Inception weights are missing",
    )
    parser.add_argument(
        "--fid-statistics",
        type=Path,
        default=None,
        metavar="NPZ",
        help="reference statistics (default: pretrained/fid/<kind>_val_<size>.npz, "
        "computed and written by the first evaluation if missing)",
    )
    parser.add_argument(
        "--guidance",
        nargs="+",
        type=float,
        default=None,
        metavar="S",
        help="AR runs: guidance scales to measure gFID at besides 1.0 "
        "(default: the config's sampling.guidance_scale)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="AR runs: seed of the generated images (default 0)"
    )
    parser.add_argument(
        "--work-dirs", type=Path, default=None, help=f"root of work dirs (env {WORK_DIRS_ENV})"
    )
    _add_common(parser)


def build_val_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="val", description="Validate every checkpoint of a tokenizer or AR run (once each)."
    )
    _add_evaluation(parser, weights_required=False)
    parser.add_argument(
        "--load-from",
        nargs="+",
        default=[],
        metavar="iter_N",
        help="only these checkpoints (directory names under checkpoints/)",
    )
    parser.add_argument(
        "--watch",
        action="store_true",
        help="follow a live run; exit once its final checkpoint is validated",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=30.0,
        help="seconds between scans under --watch (default 30)",
    )
    return parser


def build_test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="test",
        description="Evaluate one set of tokenizer or AR weights into WORK_DIRS/NAME_test.",
    )
    _add_evaluation(parser, weights_required=True)
    parser.add_argument(
        "--ten-crop",
        action="store_true",
        help="also write LlamaGen-style ten-crop tokens of the train split",
    )
    return parser


def _settings(args: argparse.Namespace) -> EvalSettings:
    return EvalSettings(
        inception_weights=args.inception,
        require_fid=args.require_fid,
        fid_statistics=args.fid_statistics,
        visual=args.visual,
        tokenize=args.tokenize,
        autocast=args.autocast,
        compile=args.compile,
        batch_size=args.batch_size,
        seed=args.seed,
        guidance=tuple(args.guidance) if args.guidance else None,
    )


def build_evaluator(
    config: Any, source: Path, settings: EvalSettings, device: torch.device
) -> TokenizerEvaluator | GeneratorEvaluator | ProbeEvaluator:
    """The evaluation of the run ``config`` describes: an AR or NAR network, a probe or a
    tokenizer."""
    if is_proposal_run(config):
        return GeneratorEvaluator(config, settings, device)
    if isinstance(config, ProbeRunConfig):
        return ProbeEvaluator(config, settings, device)
    return TokenizerEvaluator(config, source, settings, device)


# ------------------------------------------------------------------ helpers ---------


def _evaluable_config(args: argparse.Namespace, command: str) -> Any:
    """The run config of ``args``; refuses flags that do not apply to it, before anything
    is written."""
    config = resolve_config(args.config, args.config_options, args.override)
    if getattr(args, "ten_crop", False) and (
        is_proposal_run(config) or isinstance(config, ProbeRunConfig)
    ):
        raise UserError(f"--ten-crop writes a tokenizer's codes: {command} the tokenizer run")
    return config


def _checked(args: argparse.Namespace, command: str) -> tuple[Any, torch.device]:
    """The config and the device; refusals from here on write nothing."""
    config = _evaluable_config(args, command.split(" ", 1)[0])
    if args.compile:
        check_compile()
    return config, launch.init_process_group()


def _open_out_dir(
    args: argparse.Namespace, config: Any, device: torch.device, out_dir: Path, command: str
) -> None:
    """The first write of a command: ``out_dir`` with the resolved config and the log,
    once everything that can refuse the command has been checked."""
    if distributed.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        write_resolved_config(config, out_dir, args.config, f"command: {command}")
    distributed.barrier()
    setup_logging(out_dir, f"command\n{command}")
    amp.warn_if_autocast_slow(device, args.autocast)


# ------------------------------------------------------------------ val -------------


class Validator:
    """Validates checkpoints of one run with one tokenizer and one set of meters."""

    def __init__(self, args: argparse.Namespace, config: Any, device: torch.device) -> None:
        self.args, self.config, self.device = args, config, device
        self.work_dir = work_dir_of(args.name, args.work_dirs)
        self.checkpoints = self.work_dir / "checkpoints"
        self.val_dir = self.work_dir / "val"
        self.evaluator = build_evaluator(config, args.config, _settings(args), device)
        self.board: TensorBoard | None = None  # opened by run(), after every check
        self.wanted = set(args.load_from)
        self.final = f"iter_{config.loop.iters}"

    def validated(self, name: str) -> bool:
        return (self.val_dir / name / "metrics.json").is_file()

    def pending(self) -> list[Path]:
        """Complete checkpoints to validate, oldest first (rank 0 decides for everyone)."""
        found: list[Path] | None = None
        if distributed.is_main():
            found = [
                p
                for p in complete_checkpoints(self.checkpoints)
                if (not self.wanted or p.name in self.wanted) and not self.validated(p.name)
            ]
        return distributed.broadcast_object(found)

    def finished(self) -> bool:
        done = None
        if distributed.is_main():
            goal = self.wanted or {self.final}
            done = all(self.validated(name) for name in goal)
        return bool(distributed.broadcast_object(done))

    def check_whitelist(self) -> None:
        """Without --watch, every --load-from name must be a complete checkpoint now."""
        problem = None
        if distributed.is_main() and self.wanted:
            present = {p.name for p in complete_checkpoints(self.checkpoints)}
            missing = sorted(self.wanted - present, key=lambda n: iteration_of(Path(n)) or 0)
            if missing:
                problem = (
                    f"--load-from {' '.join(missing)}: no complete checkpoint of that name in "
                    f"{self.checkpoints} (have: {' '.join(sorted(present)) or 'none'})"
                )
        problem = distributed.broadcast_object(problem)
        if problem:
            raise UserError(problem)

    def validate(self, checkpoint: Path) -> None:
        name = checkpoint.name
        iteration = iteration_of(checkpoint)
        out_dir = self.val_dir / name
        meta = checkpoint_meta(checkpoint)
        if meta is None:  # removed meanwhile (keep_last)
            LOGGER.info("%s disappeared before it could be validated", checkpoint)
            return
        weights = checkpoint
        if meta.get("sharded"):
            weights = out_dir / ".model.consolidated.safetensors"
            if distributed.is_main():
                consolidate(checkpoint, weights)
            distributed.barrier()
        files = [*config_weights(self.config), *self.args.load_model_from, weights]
        summary = load_evaluated_weights(
            self.evaluator.module, files, meta.get("modules", {}).get("model", [])
        )
        LOGGER.info("validating %s (%s)", name, summary)
        evaluation = self.evaluator(out_dir)
        if distributed.is_main():
            evaluation.write(out_dir / "metrics.json", str(checkpoint), iteration)
            numbers = {k: v for k, v in evaluation.metrics.items() if isinstance(v, float)}
            if iteration is not None and self.board is not None:
                self.board.scalars("val", numbers, iteration)
            if weights != checkpoint:
                weights.unlink(missing_ok=True)
            LOGGER.info("%s: %s", name, evaluation.summary())
        distributed.barrier()

    def check(self) -> None:
        """Without --watch: the checkpoints must be there now (before anything is written)."""
        if not self.args.watch:
            if not self.checkpoints.is_dir():
                raise UserError(f"{self.checkpoints} does not exist (no checkpoints to validate)")
            self.check_whitelist()

    def run(self) -> None:
        self.board = TensorBoard(self.work_dir / "tensorboard")
        waiting_logged = False
        while True:
            todo = self.pending()
            for checkpoint in todo:
                self.validate(checkpoint)
            if not self.args.watch or self.finished():
                break
            if not todo and not waiting_logged:
                goal = " ".join(sorted(self.wanted)) or self.final
                LOGGER.info("waiting for %s (polling every %gs)", goal, self.args.poll_seconds)
                waiting_logged = True
            time.sleep(self.args.poll_seconds)
        LOGGER.info("validation of %s finished", self.work_dir)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def run_val(args: argparse.Namespace, argv: list[str]) -> int:
    command = shlex.join(["val", *argv])
    val_dir = work_dir_of(args.name, args.work_dirs) / "val"
    try:
        config, device = _checked(args, command)
        validator = Validator(args, config, device)
        try:
            validator.check()
            _open_out_dir(args, config, device, val_dir, command)
            validator.run()
        finally:
            validator.close()
    finally:
        launch.destroy_process_group()
    return 0


# ------------------------------------------------------------------ test ------------


def run_test(args: argparse.Namespace, argv: list[str]) -> int:
    command = shlex.join(["test", *argv])
    out_dir = work_dir_of(f"{args.name}_test", args.work_dirs)
    try:
        config, device = _checked(args, command)
        settings = _settings(args)
        evaluator = build_evaluator(config, args.config, settings, device)
        files = [*config_weights(config), *args.load_model_from]
        summary = load_evaluated_weights(evaluator.module, files, frozen_prefixes(files))
        _open_out_dir(args, config, device, out_dir, command)
        LOGGER.info("weights: %s", summary)
        evaluation = evaluator(out_dir)
        metas = [m for m in map(checkpoint_meta, files) if m is not None]
        iteration = metas[-1]["iteration"] if metas else None
        if distributed.is_main():
            evaluation.write(out_dir / "metrics.json", " ".join(map(str, files)), iteration)
            LOGGER.info("test %s: %s", args.name, evaluation.summary())
        if args.ten_crop:
            path = out_dir / TEN_CROP_TOKENS_FILE
            tokenize_ten_crop(evaluator.module, config, settings, device, path)
        distributed.barrier()
    finally:
        launch.destroy_process_group()
    return 0


# ------------------------------------------------------------------ entry points ----

_COMMANDS = {
    "val": (build_val_parser, run_val),
    "test": (build_test_parser, run_test),
}


def command_main(command: str, argv: list[str] | None = None) -> int:
    """Parse ``argv`` for ``command``; relaunch under torchrun for ``--nproc`` > 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if command == "fid":  # its own module, which relaunches itself
        return fid_command_main(argv)
    build_parser, run = _COMMANDS[command]
    args = build_parser().parse_args(argv)
    return launch.run_or_relaunch(
        args.nproc,
        "vq.train.eval_cli",
        [command, *argv],
        run=lambda: _guarded(run, args, argv),
        validate=lambda: _guarded(_validate_only, args, command),
    )


def _validate_only(args: argparse.Namespace, command: str) -> int:
    _evaluable_config(args, command)
    return 0


def val_main() -> None:
    launch.exit_command(command_main("val"))


def test_main() -> None:
    launch.exit_command(command_main("test"))


if __name__ == "__main__":  # python -m vq.train.eval_cli {val,test,fid} ... (torchrun ranks)
    if len(sys.argv) < 2 or sys.argv[1] not in (*_COMMANDS, "fid"):
        sys.exit(f"usage: python -m vq.train.eval_cli {{{','.join(_COMMANDS)},fid}} ...")
    launch.exit_command(command_main(sys.argv[1], sys.argv[2:]))
