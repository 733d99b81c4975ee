"""``export`` and ``convert``: make pretrained tokenizer directories for ``vq.tokenizers.api``.

``uv run export RUN_OR_CHECKPOINT OUT_DIR [--config RESOLVED_CONFIG] [--image-size N]``
turns a training checkpoint of a tokenizer run into a directory that
``Tokenizer.from_pretrained`` loads with nothing but ``vq-tokenizers`` installed::

    uv run export work_dirs/vqgan/8192_dd2 tokenizers/vqgan_8192            # latest checkpoint
    uv run export work_dirs/vqgan/8192_dd2/checkpoints/iter_260000 tokenizers/vqgan_8192

The model is rebuilt from the run's resolved config (``work_dirs/NAME/<config>.py``) by its
``build_tokenizer()`` (``vq.train.tokenizer_run``), and the
checkpoint's ``models/model`` weights are loaded strictly; an FSDP-sharded checkpoint is
consolidated first. Only the tokenizer is written: discriminators, optimizer state, LPIPS
and VQ-KD's distillation teacher are not part of it. A Cluster run's directory holds its
teacher's weights (it tokenizes with them). A pixel-decoder run gives the pair of kind
``decoded_tokenizer`` (``vq.decoders.api``); its checkpoints leave the frozen tokenizer out,
so that tokenizer's checkpoint is named too::

    uv run export work_dirs/decoder/vqkd_clip tokenizers/vqkd_clip_decoded \\
        --tokenizer-weights work_dirs/vqkd/clip_8192_imagenet_ddp/checkpoints/latest

``uv run convert KIND CHECKPOINT OUT_DIR [--options key:value ...]`` does the same from a
public checkpoint (``taming``, ``beitv2``, ``llamagen``; see ``vq.tokenizers.convert``).
Options use the ``--config-options`` syntax, e.g. ``--options with_decoder:False``. Kind
``llamagen-gpt`` converts LlamaGen's class-to-image GPTs instead: ``OUT_DIR`` gets the
weights of our LLaMA network for ``sample``/``test`` (``vq.generators.convert_llamagen``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor, nn

from vq.core.checkpoint import consolidate, latest_checkpoint
from vq.core.configfile import load_config, parse_assignments
from vq.core.errors import EXIT_USER_ERROR, UserError
from vq.core.tensorfiles import read_tensors, read_weights
from vq.generators import convert_llamagen
from vq.tokenizers.api import Tokenizer, check_state, kind_of
from vq.tokenizers.convert import CONVERTERS, convert_checkpoint, converter_options
from vq.train.tokenizer_run import tokenizer_run

MODEL = "model"
"""The tracked module that holds the tokenizer in every tokenizer trainer."""


def find_checkpoint(source: Path) -> tuple[Path, Path]:
    """``(checkpoint_dir, run_dir)`` of a run directory (its latest checkpoint), a
    ``checkpoints/`` directory, or one checkpoint ``checkpoints/iter_N`` (or ``latest``)."""
    if (source / "meta.json").is_file():
        return source.resolve(), source.resolve().parent.parent
    for checkpoints, run_dir in ((source / "checkpoints", source), (source, source.parent)):
        if checkpoints.is_dir() and (found := latest_checkpoint(checkpoints)) is not None:
            return found, run_dir
    raise UserError(
        f"{source} is neither a run directory with complete checkpoints nor a checkpoint "
        "(a directory with meta.json, e.g. work_dirs/NAME/checkpoints/iter_N)"
    )


def find_config(run_dir: Path) -> Path:
    """The resolved config a run wrote into its work dir (the only ``*.py`` file there)."""
    candidates = sorted(run_dir.glob("*.py"))
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise UserError(
            f"cannot tell the resolved config of run {run_dir} (Python files there: {found}); "
            "pass it with --config work_dirs/NAME/<config>.py"
        )
    return candidates[0]


def read_model_weights(checkpoint: Path) -> dict:
    """The tokenizer's weights of ``checkpoint`` (consolidating an FSDP checkpoint)."""
    meta = json.loads((checkpoint / "meta.json").read_text())
    if MODEL not in meta.get("modules", {}):
        raise UserError(f"{checkpoint} has no model {MODEL!r}; it has {sorted(meta['modules'])}")
    if not meta.get("sharded"):
        return read_tensors(checkpoint / "models" / f"{MODEL}.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        consolidated = Path(tmp) / f"{MODEL}.safetensors"
        consolidate(checkpoint, consolidated, MODEL)
        return read_tensors(consolidated)


def pixel_decoder_parts(model: nn.Module) -> tuple[str, ...]:
    """The frozen tokenizer's prefixes of a pixel-decoder run's model (none otherwise)."""
    return tuple(getattr(model, "frozen_prefixes", ()))


def run_weights(
    model: nn.Module, checkpoint: Path, tokenizer_weights: Sequence[Path], source: str
) -> dict[str, Tensor]:
    """The weights of the run's model: its checkpoint's, plus, for a pixel-decoder run,
    the frozen tokenizer's from ``tokenizer_weights`` (its checkpoints leave it out)."""
    state = read_model_weights(checkpoint)
    frozen = pixel_decoder_parts(model)
    if not frozen:
        if tokenizer_weights:
            raise UserError(
                f"--tokenizer-weights: {source} is not a pixel-decoder run; its checkpoint "
                "holds the whole tokenizer"
            )
        return state
    if not tokenizer_weights:
        raise UserError(
            f"{source} is a pixel-decoder run, whose checkpoints leave out the frozen "
            "tokenizer: pass --tokenizer-weights work_dirs/<tokenizer run>/checkpoints/iter_N"
        )
    tokenizer_state: dict[str, Tensor] = {}
    for path in tokenizer_weights:
        tokenizer_state.update(read_weights(Path(path)))
    shown = " ".join(str(p) for p in tokenizer_weights)
    own = {k: v for k, v in model.state_dict().items() if k.split(".", 1)[0] in frozen}
    kept = {k: v for k, v in tokenizer_state.items() if k.split(".", 1)[0] in frozen}
    check_state(own, kept, f"--tokenizer-weights {shown} does not fit the run's tokenizer")
    return {**kept, **state}


def export(
    source: Path,
    out_dir: Path,
    config_path: Path | None = None,
    image_size: int | None = None,
    tokenizer_weights: Sequence[Path] = (),
) -> Tokenizer:
    """Write the tokenizer of the run or checkpoint ``source`` to ``out_dir``; returns it.

    The model is built by the run config (a Cluster run reads its teacher's file here, so
    the directory holds the teacher), and every weight of it must come from the run's
    checkpoint or, for a pixel-decoder run, from ``tokenizer_weights``. A pixel-decoder
    pair over VQ-KD leaves out VQ-KD's feature decoder, which decoding never uses.
    """
    checkpoint, run_dir = find_checkpoint(Path(source))
    config_path = Path(config_path) if config_path is not None else find_config(run_dir)
    run = tokenizer_run(load_config(config_path), config_path, "export")
    model = run.build_tokenizer()
    kind = kind_of(model)
    # a pixel-decoder run's config names its tokenizer's weights; --tokenizer-weights wins
    tokenizer_weights = list(tokenizer_weights) or run.frozen_weights
    state = run_weights(model, checkpoint, tokenizer_weights, str(run_dir))
    children = dict(model.named_children())
    omitted = ("decoder",) if pixel_decoder_parts(model) and "decoder" in children else ()
    expected = {k: v for k, v in model.state_dict().items() if k.split(".", 1)[0] not in omitted}
    state = {k: v for k, v in state.items() if k.split(".", 1)[0] not in omitted}
    check_state(expected, state, f"checkpoint {checkpoint} does not fit the {kind.name} model")
    model.load_state_dict(state, strict=False)  # complete up to the omitted parts
    tokenizer = Tokenizer(model, image_size=image_size or run.image_size, omitted=omitted)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


# ------------------------------------------------------------------ commands -------------


def _guarded(run: Callable[[], int]) -> int:
    try:
        return run()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR


def export_command(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="export",
        description="Write a tokenizer checkpoint as a directory Tokenizer.from_pretrained loads.",
    )
    parser.add_argument("source", type=Path, help="work_dirs/NAME or .../checkpoints/iter_N")
    parser.add_argument("out", type=Path, help="output directory")
    parser.add_argument(
        "--config", type=Path, help="the run's resolved config (default: the .py in its work dir)"
    )
    parser.add_argument("--image-size", type=int, help="default: the run's data.image_size")
    parser.add_argument(
        "--tokenizer-weights",
        type=Path,
        nargs="+",
        default=[],
        metavar="F",
        help="pixel-decoder runs: the frozen tokenizer's checkpoint (later files win)",
    )
    args = parser.parse_args(argv)

    def run() -> int:
        tokenizer = export(
            args.source, args.out, args.config, args.image_size, args.tokenizer_weights
        )
        print(f"wrote {tokenizer!r} to {args.out}")
        return 0

    return _guarded(run)


def convert_command(argv: list[str] | None = None) -> int:
    options_help = "; ".join(
        f"{name}: " + ", ".join(f"{k}={p.default!r}" for k, p in converter_options(name).items())
        for name in CONVERTERS
    )
    options_help += f"; {convert_llamagen.KIND}: " + ", ".join(
        f"{k}={p.default!r}" for k, p in convert_llamagen.converter_options().items()
    )
    parser = argparse.ArgumentParser(
        prog="convert",
        description="Convert a public tokenizer checkpoint into a from_pretrained directory "
        "(kind llamagen-gpt: a LlamaGen GPT into weights for sample/test).",
    )
    kinds = sorted([*CONVERTERS, convert_llamagen.KIND])
    parser.add_argument("kind", choices=kinds, help="which codebase made it")
    parser.add_argument("checkpoint", type=Path, help=".ckpt / .pth / .pt file")
    parser.add_argument("out", type=Path, help="output directory")
    parser.add_argument(
        "--options", nargs="*", default=[], metavar="KEY:VALUE", help=f"({options_help})"
    )
    args = parser.parse_args(argv)

    def run() -> int:
        if args.kind == convert_llamagen.KIND:  # a proposal network, not a tokenizer
            gpt = convert_llamagen.convert_checkpoint(
                args.checkpoint, args.out, parse_assignments(args.options)
            )
            print(
                f"wrote {gpt.describe()} to {args.out} "
                f"({len(gpt.dropped)} checkpoint entries left out on purpose)"
            )
            return 0
        conversion = convert_checkpoint(
            args.kind, args.checkpoint, args.out, parse_assignments(args.options)
        )
        extras = "".join(f" + {name}" for name in conversion.extras)
        print(
            f"wrote {conversion.tokenizer!r}{extras} to {args.out} "
            f"({len(conversion.dropped)} checkpoint entries left out on purpose)"
        )
        return 0

    return _guarded(run)


def export_main() -> None:
    sys.exit(export_command())


def convert_main() -> None:
    sys.exit(convert_command())
